//! Derived identifiers of a container (spec §6.1–§6.4).

/// `uid = UID_BASE + id`: the public container number, its Unix uid and its ssh login.
pub const UID_BASE: i64 = 30000;

pub fn uid_of(container_id: i64) -> i64 {
    UID_BASE + container_id
}

/// The database id of a public uid; `None` for values that can never name a container.
pub fn id_of_uid(uid: i64) -> Option<i64> {
    (uid > UID_BASE).then(|| uid - UID_BASE)
}

/// The container's address on the private 10.0.0.0/8 network: 10.0.0.1 is the gateway,
/// 10.0.0.2 the API, so id 1 gets 10.0.0.3. Wraps after 2^24 like the reference.
pub fn container_ip(container_id: i64) -> std::net::Ipv4Addr {
    let host = ((container_id + 2) as u32) & 0x00FF_FFFF;
    std::net::Ipv4Addr::from(0x0A00_0000 | host)
}

/// Hostname derived from a container name: letters, digits and `-` stay, every other
/// character becomes one `-`.
pub fn hostname_of(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect()
}

/// Stored form of a list of ssh keys.
pub fn join_ssh_keys(keys: &[String]) -> String {
    keys.join("\n")
}

/// Keys as the reference reads them back (spec §6.4): `\r` → `\n`, each `\n\n` → `\n` in one
/// left-to-right pass, then split on `\n`; empty or null text is no keys.
pub fn split_ssh_keys(raw: Option<&str>) -> Vec<String> {
    match raw {
        None | Some("") => Vec::new(),
        Some(text) => text.replace('\r', "\n").replace("\n\n", "\n").split('\n').map(str::to_owned).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_round_trip_and_floor() {
        assert_eq!(uid_of(9), 30009);
        assert_eq!(id_of_uid(30009), Some(9));
        assert_eq!(id_of_uid(30000), None);
        assert_eq!(id_of_uid(-5), None);
    }

    #[test]
    fn ip_matches_reference() {
        assert_eq!(container_ip(1).to_string(), "10.0.0.3");
        assert_eq!(container_ip(9).to_string(), "10.0.0.11");
        assert_eq!(container_ip(254).to_string(), "10.0.1.0");
    }

    #[test]
    fn hostname_maps_every_other_char_to_dash() {
        assert_eq!(hostname_of("my app.v2"), "my-app-v2");
        assert_eq!(hostname_of("caffè"), "caff-");
        assert_eq!(hostname_of(""), "");
    }

    #[test]
    fn ssh_keys_read_like_reference() {
        let keys = vec!["k1".to_owned(), "k2".to_owned()];
        assert_eq!(split_ssh_keys(Some(&join_ssh_keys(&keys))), keys);
        assert_eq!(split_ssh_keys(Some("a\r\nb")), vec!["a", "b"]);
        assert_eq!(split_ssh_keys(Some("a\n")), vec!["a", ""]);
        assert!(split_ssh_keys(None).is_empty());
    }
}
