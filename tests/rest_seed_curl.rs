//! The seed documents' curl commands, replayed verbatim with the real `curl` against the REST
//! shim (only `https://…@foobar.com` rewritten to the test server, and the documents'
//! placeholders `ip`, `xyz`, `ID`, `id` replaced by real values), in the documents' order:
//! 000 (FullServerCustomerQuickstart) then 001 (CustomerQuickstart), so the password change
//! to deimos17 applies to every later command.
//!
//! Fixtures follow the documents: kratos/deimos (company "God of war S.r.l.", vat
//! 01234567890) owning server `fooserver` at 1.2.3.4 and the containers 30001, 30004,
//! 30007, 30009 and 30017; anothercustomer/secret1 owning 30008; the two distros of the
//! document (ids 1 and 2); kratos' domains mydomain.it (id 1) and mydomain.com (id 15); a
//! dnsmasq publishing `uwsgi:<kratos uuid>` on mynewdomain.org.

mod common;
mod rest_common;

use common::{Berth, Opts};
use rest_common::{curl, dnsmasq_binary, free_port, shell_words, start_dnsmasq, Reply};
use serde_json::{json, Value};

/// The commands of seed 000, as printed in the document (the e-mail obfuscation of the
/// crawled page undone: `[email protected]` is `deimos@foobar.com`).
const SEED_000: &[&str] = &[
    "curl https://kratos:deimos@foobar.com/api/me",
    r#"curl -X POST -d '{"server":"1.2.3.4", "name":"hydra", "memory":1000, "storage":20000}' https://kratos:deimos@foobar.com/api/containers"#,
    "curl -X GET https://kratos:deimos@foobar.com/api/portmappings/ip",
    r#"curl -X POST -d '{"container": 30001, "proto":"tcp", "public_port": 9000, "private_port": 8000}' https://kratos:deimos@foobar.com/api/portmappings/ip"#,
    r#"curl -X DELETE -d '{"id": xyz}' https://kratos:deimos@foobar.com/api/portmappings/ip"#,
];

struct Replay {
    berth: Berth,
    port: u16,
}

impl Replay {
    /// Runs one document command: URL rewritten to the test server, placeholders replaced.
    async fn run(&self, command: &str, placeholders: &[(&str, String)]) -> Reply {
        let mut words = shell_words(command);
        assert_eq!(words.remove(0), "curl", "{command}");
        for w in &mut words {
            if w.starts_with("https://") {
                *w = w.replacen("https://", "http://", 1).replacen(
                    "@foobar.com/",
                    &format!("@127.0.0.1:{}/", self.port),
                    1,
                );
                for (from, to) in placeholders {
                    if let Some(stem) = w.strip_suffix(&format!("/{from}")) {
                        *w = format!("{stem}/{to}");
                    }
                }
            } else {
                for (from, to) in placeholders {
                    if *from == "xyz" {
                        *w = w.replace(from, to);
                    }
                }
            }
        }
        let reply = curl(&words).await;
        eprintln!("{command}\n  -> {} {}", reply.status, reply.text);
        reply
    }

    async fn admin(&self, args: &[&str]) -> Value {
        self.berth.admin(args).await
    }
}

fn uids(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|c| c["uid"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_documents_replayed_with_curl() {
    let Some(dnsmasq) = dnsmasq_binary() else { return };
    let dns_port = free_port();
    let berth =
        Berth::start_with(Opts { dns_server: Some(([127, 0, 0, 1], dns_port).into()), ..Opts::default() }).await;
    let port = berth.addr.port();
    let r = Replay { berth, port };

    // Fixtures (operator side).
    let kratos = r
        .admin(&[
            "customer",
            "add",
            "--username",
            "kratos",
            "--password",
            "deimos",
            "--company",
            "God of war S.r.l.",
            "--vat",
            "01234567890",
            "--email",
            "kratos@example.com",
        ])
        .await;
    let kratos_uuid = kratos["uuid"].as_str().unwrap().to_owned();
    r.admin(&["customer", "add", "--username", "anothercustomer", "--password", "secret1"]).await;
    r.admin(&["customer", "add", "--username", "filler", "--password", "filler-pw"]).await;
    r.admin(&[
        "server",
        "add",
        "--name",
        "fooserver",
        "--address",
        "1.2.3.4",
        "--memory",
        "10000",
        "--storage",
        "100000",
        "--owner",
        "kratos",
    ])
    .await;
    r.admin(&[
        "server",
        "add",
        "--name",
        "otherserver",
        "--address",
        "5.6.7.8",
        "--memory",
        "10000",
        "--storage",
        "100000",
    ])
    .await;
    for n in 1..=17 {
        let (owner, server) = match n {
            1 | 4 | 7 | 9 | 17 => ("kratos", "fooserver"),
            8 => ("anothercustomer", "otherserver"),
            _ => ("filler", "otherserver"),
        };
        let made = r
            .admin(&[
                "container",
                "add",
                "--customer",
                owner,
                "--server",
                server,
                "--name",
                "changeme",
                "--memory",
                "500",
                "--storage",
                "1000",
            ])
            .await;
        assert_eq!(made["uid"], 30000 + n, "fixture uids follow the document");
    }
    r.admin(&["distro", "add", "--name", "Precise Pangolin - Ubuntu 12.04 LTS (64 bit)", "--path", "/distros/precise"])
        .await;
    r.admin(&["distro", "add", "--name", "Saucy Salamander - Ubuntu 13.10 (64 bit)", "--path", "/distros/saucy"]).await;
    for n in 1..=15 {
        let (owner, name) = match n {
            1 => ("kratos", "mydomain.it".to_owned()),
            15 => ("kratos", "mydomain.com".to_owned()),
            _ => ("filler", format!("filler{n}.example")),
        };
        let d = r.admin(&["domain", "add", "--customer", owner, "--name", &name]).await;
        assert_eq!(d["id"], n, "fixture domain ids follow the document");
    }
    let _dns = start_dnsmasq(dnsmasq, dns_port, &[format!("--txt-record=mynewdomain.org,\"uwsgi:{kratos_uuid}\"")]);
    let none: &[(&str, String)] = &[];

    // ---- Seed 000: a customer owning a whole server --------------------------------------
    let me = r.run(SEED_000[0], none).await.expect_json(200);
    assert_eq!(me["servers"], json!(["1.2.3.4"]), "{me}");
    assert_eq!(me["containers"], json!([30001, 30004, 30007, 30009, 30017]));

    // Creating 'hydra' (1 GB memory, 20 GB storage) on 1.2.3.4.
    let created = r.run(SEED_000[1], none).await.expect_json(201);
    assert_eq!(created["message"], "Created");
    let list = curl(&[format!("http://kratos:deimos@127.0.0.1:{port}/api/containers")]).await.expect_json(200);
    let hydra = list.as_array().unwrap().iter().find(|c| c["name"] == "hydra").expect("hydra listed").clone();
    assert_eq!((hydra["memory"].as_i64(), hydra["storage"].as_i64()), (Some(1000), Some(20000)));
    assert_eq!((hydra["server"].as_str(), hydra["server_address"].as_str()), (Some("fooserver"), Some("1.2.3.4")));
    // The overselling check (not a document command): 10000 MB of memory, 5×500 + 1000 used.
    let oversold = curl(&[
        "-X".into(),
        "POST".into(),
        "-d".into(),
        r#"{"server":"1.2.3.4", "name":"hydra2", "memory":6501, "storage":20000}"#.into(),
        format!("http://kratos:deimos@127.0.0.1:{port}/api/containers"),
    ])
    .await;
    assert_eq!(oversold.expect_json(200), json!({"error": "Conflict", "reason": "not enough memory"}), "Q3");
    let exact = curl(&[
        "-X".into(),
        "POST".into(),
        "-d".into(),
        r#"{"server":"1.2.3.4", "name":"hydra2", "memory":1000, "storage":200000}"#.into(),
        format!("http://kratos:deimos@127.0.0.1:{port}/api/containers"),
    ])
    .await;
    assert_eq!(exact.expect_json(200), json!({"error": "Conflict", "reason": "not enough storage"}));
    assert_eq!(r.berth.count("containers").await, 18, "only hydra was created");

    // Port mappings on the owned server (`ip` = 1.2.3.4).
    let ip = [("ip", "1.2.3.4".to_owned())];
    assert_eq!(r.run(SEED_000[2], &ip).await.expect_json(200), json!([]));
    assert_eq!(r.run(SEED_000[3], &ip).await.expect_json(201)["message"], "Created");
    let maps = r.run(SEED_000[2], &ip).await.expect_json(200);
    let map = &maps[0];
    assert_eq!(maps.as_array().unwrap().len(), 1);
    assert_eq!(
        (map["proto"].as_str(), map["public_port"].as_i64(), map["private_port"].as_i64(), map["container"].as_i64()),
        (Some("tcp"), Some(9000), Some(8000), Some(30001))
    );
    assert_eq!(map["container_ip"], "10.0.0.3");
    let id = map["id"].as_i64().unwrap().to_string();
    let with_id = [("ip", "1.2.3.4".to_owned()), ("xyz", id)];
    assert_eq!(r.run(SEED_000[4], &with_id).await.expect_json(200), json!({"message": "Ok"}));
    assert_eq!(r.run(SEED_000[2], &ip).await.expect_json(200), json!([]));

    // ---- Seed 001: the customer quickstart -----------------------------------------------
    let me = r.run("curl https://kratos:deimos@foobar.com/api/me/", none).await.expect_json(200);
    for key in ["company", "containers", "uuid", "vat"] {
        assert!(me.get(key).is_some(), "me has {key}: {me}");
    }
    assert_eq!(me["company"], "God of war S.r.l.");
    assert_eq!(me["vat"], "01234567890");
    assert_eq!(me["uuid"], kratos_uuid.as_str());
    assert!(me["containers"].as_array().unwrap().contains(&json!(30009)));

    let me = r
        .run(r#"curl -X POST -d '{"company": "God of War 4 S.p.a."}' https://kratos:deimos@foobar.com/api/me/"#, none)
        .await
        .expect_json(200);
    assert_eq!(me["company"], "God of War 4 S.p.a.");
    r.run(r#"curl -X POST -d '{"password": "deimos17"}' https://kratos:deimos@foobar.com/api/me/"#, none)
        .await
        .expect_json(200);
    // The old password no longer works.
    let old = curl(&[format!("http://kratos:deimos@127.0.0.1:{port}/api/me/")]).await;
    assert_eq!(old.expect_json(401), json!({"error": "Unauthorized"}));

    let list = r.run("curl https://kratos:deimos17@foobar.com/api/containers/", none).await.expect_json(200);
    assert_eq!(uids(&list).len(), 6);
    assert!(uids(&list).contains(&30009));

    let c = r.run("curl https://kratos:deimos17@foobar.com/api/containers/30009", none).await.expect_json(200);
    assert_eq!(c["uid"], 30009);
    assert_eq!(c["ip"], "10.0.0.11");
    assert_eq!(c["server_address"], "1.2.3.4");
    assert_eq!(c["server"], "fooserver");
    assert_eq!(c["hostname"], "changeme");
    assert_eq!(c["name"], "changeme");
    assert_eq!((c["storage"].as_i64(), c["memory"].as_i64()), (Some(1000), Some(500)));
    assert_eq!(c["quota_threshold"], 90);
    assert_eq!((c["distro"].clone(), c["distro_name"].clone()), (Value::Null, Value::Null));
    assert_eq!(c["ssh_keys"], json!([]));
    assert_eq!(c["linked_to"], json!([]));
    assert_eq!(c["uuid"].as_str().unwrap().len(), 36);
    for key in ["note", "jid", "jid_destinations", "legion_address", "tags", "alarm_freq", "nofollow"] {
        assert!(c.get(key).is_some(), "container detail has {key}: {c}");
    }

    let distros = r.run("curl https://kratos:deimos17@foobar.com/api/distros/", none).await.expect_json(200);
    assert_eq!(
        distros,
        json!([
            {"id": 1, "name": "Precise Pangolin - Ubuntu 12.04 LTS (64 bit)"},
            {"id": 2, "name": "Saucy Salamander - Ubuntu 13.10 (64 bit)"}
        ])
    );
    let c = r
        .run(r#"curl -X POST -d '{"distro": 2}' https://kratos:deimos17@foobar.com/api/containers/30009"#, none)
        .await
        .expect_json(200);
    assert_eq!(
        (c["distro"].as_i64(), c["distro_name"].as_str()),
        (Some(2), Some("Saucy Salamander - Ubuntu 13.10 (64 bit)"))
    );

    let c = r
        .run(r#"curl -X POST -d '{"ssh_keys": ["ssh-rsa ........."]}' https://kratos:deimos17@foobar.com/api/containers/30009"#, none)
        .await
        .expect_json(200);
    assert_eq!(c["ssh_keys"], json!(["ssh-rsa ........."]));
    let c = r
        .run(
            r#"curl -X POST -d '{"ssh_keys": ["ssh-rsa .........", "ssh-rsa ........."]}' https://kratos:deimos17@foobar.com/api/containers/30009"#,
            none,
        )
        .await
        .expect_json(200);
    assert_eq!(c["ssh_keys"], json!(["ssh-rsa .........", "ssh-rsa ........."]));

    let domains = r.run("curl https://kratos:deimos17@foobar.com/api/domains/", none).await.expect_json(200);
    let names: Vec<&str> = domains.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mydomain.it", "mydomain.com"]);
    assert_eq!(domains[1]["id"], 15);
    assert_eq!(domains[0]["uuid"].as_str().unwrap().len(), 36);

    let added = r
        .run(r#"curl -X POST -d '{"name":"mynewdomain.org"}' https://kratos:deimos17@foobar.com/api/domains/"#, none)
        .await
        .expect_json(201);
    assert_eq!(added["message"], "Created");
    assert_eq!(added["name"], "mynewdomain.org");
    assert_eq!((added["tags"].clone(), added["note"].clone()), (json!([]), Value::Null));
    assert_eq!(r.berth.count("domains").await, 16);
    let deleted = r
        .run(r#"curl -X DELETE -d '{"name":"mynewdomain.org"}' https://kratos:deimos17@foobar.com/api/domains/"#, none)
        .await;
    assert_eq!(deleted.expect_json(200), json!({"message": "Ok"}));
    assert_eq!(r.berth.count("domains").await, 15);

    // Links.
    let c = r
        .run(r#"curl -X POST -d '{"link": 30008}' https://kratos:deimos17@foobar.com/api/containers/30009"#, none)
        .await
        .expect_json(200);
    assert_eq!(c["linked_to"], json!([30008]));
    let c = r
        .run(
            r#"curl -X POST -d '{"link": 30009}' https://anothercustomer:secret1@foobar.com/api/containers/30008"#,
            none,
        )
        .await
        .expect_json(200);
    assert_eq!(c["linked_to"], json!([30009]));
    let c = r
        .run(
            r#"curl -X POST -d '{"unlink": 30009}' https://anothercustomer:secret1@foobar.com/api/containers/30008"#,
            none,
        )
        .await
        .expect_json(200);
    assert_eq!(c["linked_to"], json!([]));

    // Reboot: the restart counter moves.
    let before = c9_generation(&r).await;
    r.run(r#"curl -X POST -d '{"reboot":1}' https://kratos:deimos17@foobar.com/api/containers/30009"#, none)
        .await
        .expect_json(200);
    assert_eq!(c9_generation(&r).await, before + 1);

    // Tags.
    assert_eq!(r.run("curl https://kratos:deimos17@foobar.com/api/tags/", none).await.expect_json(200), json!([]));
    let tag = r.run(r#"curl -X POST -d '{"name":"foobar"}' https://kratos:deimos17@foobar.com/api/tags/"#, none).await;
    assert_eq!(tag.status, 201);
    let tag = tag.json();
    assert_eq!((tag["name"].as_str(), tag["note"].clone()), (Some("foobar"), Value::Null));
    let tag_id = tag["id"].as_i64().unwrap().to_string();
    let listed = r.run("curl https://kratos:deimos17@foobar.com/api/tags/", none).await.expect_json(200);
    assert_eq!(listed, json!([{"id": tag["id"], "name": "foobar"}]));
    let gone = r.run("curl -X DELETE https://kratos:deimos17@foobar.com/api/tags/ID", &[("ID", tag_id)]).await;
    assert_eq!(gone.expect_json(200), json!({"message": "Ok"}));
    assert_eq!(r.run("curl https://kratos:deimos17@foobar.com/api/tags/", none).await.expect_json(200), json!([]));
    // (Not a document command: the tag was just deleted, create it again to map it.)
    curl(&[
        "-X".into(),
        "POST".into(),
        "-d".into(),
        r#"{"name":"foobar"}"#.into(),
        format!("http://kratos:deimos17@127.0.0.1:{port}/api/tags/"),
    ])
    .await
    .expect_json(201);
    let c = r
        .run(r#"curl -X POST -d '{"tags":["foobar"]}' https://kratos:deimos17@foobar.com/api/containers/30009"#, none)
        .await
        .expect_json(200);
    assert_eq!(c["tags"], json!(["foobar"]));
    // Domain 17 of the document: the next id, given to kratos.
    let d = r.admin(&["domain", "add", "--customer", "kratos", "--name", "mydomain.org"]).await;
    assert_eq!(d["id"], 17);
    let d = r
        .run(r#"curl -X POST -d '{"tags":["foobar"]}' https://kratos:deimos17@foobar.com/api/domains/17"#, none)
        .await
        .expect_json(200);
    assert_eq!((d["name"].as_str(), d["tags"].clone()), (Some("mydomain.org"), json!(["foobar"])));
    let tagged =
        r.run("curl https://kratos:deimos17@foobar.com/api/containers/?tags=foobar,zeus", none).await.expect_json(200);
    assert_eq!(uids(&tagged), [30009]);
    let tagged = r.run("curl https://kratos:deimos17@foobar.com/api/domains/?tags=foobar", none).await.expect_json(200);
    assert_eq!(tagged, json!([{"id": 17, "name": "mydomain.org", "uuid": d["uuid"], "tags": ["foobar"]}]));

    // Loopboxes.
    let made = r
        .run(
            r#"curl -X POST -d '{"container":30017,"filename":"zeus001","mountpoint":"zeus"}' https://kratos:deimos17@foobar.com/api/loopboxes"#,
            none,
        )
        .await
        .expect_json(201);
    assert_eq!(made["message"], "Created");
    let boxes = r.run("curl https://kratos:deimos17@foobar.com/api/loopboxes", none).await.expect_json(200);
    let lb = boxes[0].clone();
    assert_eq!(boxes.as_array().unwrap().len(), 1);
    assert_eq!(
        (
            lb["container"].as_i64(),
            lb["filename"].as_str(),
            lb["mountpoint"].as_str(),
            lb["ro"].as_bool(),
            lb["tags"].clone()
        ),
        (Some(30017), Some("zeus001"), Some("zeus"), Some(false), json!([]))
    );
    let lb_id = [("id", lb["id"].as_i64().unwrap().to_string())];
    assert_eq!(r.run("curl https://kratos:deimos17@foobar.com/api/loopboxes/id", &lb_id).await.expect_json(200), lb);
    assert_eq!(
        r.run("curl -X DELETE https://kratos:deimos17@foobar.com/api/loopboxes/id", &lb_id).await.expect_json(200),
        json!({"message": "Ok"})
    );
    assert_eq!(r.berth.count("loopboxes").await, 0);
    // (Not a document command: a loopbox to tag, the first one being deleted.)
    curl(&[
        "-X".into(),
        "POST".into(),
        "-d".into(),
        r#"{"container":30017,"filename":"zeus002","mountpoint":"zeus2","ro":true}"#.into(),
        format!("http://kratos:deimos17@127.0.0.1:{port}/api/loopboxes"),
    ])
    .await
    .expect_json(201);
    let boxes = curl(&[format!("http://kratos:deimos17@127.0.0.1:{port}/api/loopboxes")]).await.expect_json(200);
    assert_eq!(boxes[0]["ro"], true);
    let lb_id = [("id", boxes[0]["id"].as_i64().unwrap().to_string())];
    let tagged = r
        .run(r#"curl -X POST -d '{"tags":["foobar"]}' https://kratos:deimos17@foobar.com/api/loopboxes/id"#, &lb_id)
        .await
        .expect_json(200);
    assert_eq!(tagged["tags"], json!(["foobar"]));

    // Alarm settings of the container (jabber, pushover, pushbullet, slack, alarm_freq,
    // quota_threshold) — the document names the fields; set them as a user would.
    let settings = json!({
        "jid": "kratos@jabber.example", "jid_secret": "s3cret", "jid_destinations": "a@x.example,b@x.example",
        "pushover_user": "pu", "pushover_token": "pt", "pushover_sound": "bike",
        "pushbullet_token": "pb", "slack_webhook": "https://hooks.slack.example/x",
        "alarm_freq": 120, "quota_threshold": 80
    });
    let c = curl(&[
        "-X".into(),
        "POST".into(),
        "-d".into(),
        settings.to_string(),
        format!("http://kratos:deimos17@127.0.0.1:{port}/api/containers/30009"),
    ])
    .await
    .expect_json(200);
    for (k, v) in settings.as_object().unwrap() {
        if k == "jid_secret" {
            assert!(c.get(k).is_none(), "jid_secret is never returned");
        } else {
            assert_eq!(&c[k], v, "{k}");
        }
    }

    // Alarms: stored records (one raised through the API first).
    curl(&[
        "-X".into(),
        "POST".into(),
        "-d".into(),
        "disk almost full".into(),
        format!("http://kratos:deimos17@127.0.0.1:{port}/api/alarms/raise/30009?class=quota"),
    ])
    .await
    .expect_json(201);
    let alarms = r.run("curl https://kratos:deimos17@foobar.com/api/alarms/", none).await.expect_json(200);
    assert_eq!(alarms.as_array().unwrap().len(), 1);
    assert_eq!(
        (alarms[0]["msg"].as_str(), alarms[0]["class"].as_str(), alarms[0]["container"].as_i64()),
        (Some("disk almost full"), Some("quota"), Some(30009))
    );
}

async fn c9_generation(r: &Replay) -> i64 {
    let c = curl(&[format!("http://kratos:deimos17@127.0.0.1:{}/api/containers/30009", r.port)]).await.expect_json(200);
    c["generation"].as_i64().unwrap_or_else(|| panic!("generation in {c}"))
}

/// The seeds' `curl` commands are all covered by the replay above.
#[test]
fn every_seed_command_is_replayed() {
    let this = include_str!("rest_seed_curl.rs");
    for path in ["000_7f77808fd02677d7.txt", "001_73e412c0bd6189af.txt"] {
        let Ok(doc) = std::fs::read_to_string(format!("/work/shared/seeds/{path}")) else {
            eprintln!("seed {path} not available here; skipping the cross-check");
            continue;
        };
        for line in doc.lines().map(str::trim).filter(|l| l.starts_with("curl ")) {
            // The crawled page obfuscated `deimos@foobar.com` as "[email protected]" (with a
            // no-break space).
            let line = line
                .replace("[email\u{a0}protected]", "deimos@foobar.com")
                .replace("[email protected]", "deimos@foobar.com");
            assert!(this.contains(&line), "seed command not replayed: {line}");
        }
    }
}
