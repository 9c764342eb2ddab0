//! Not a measurement: seeds many containers (every relation populated) into the database of a
//! `berth serve`, for the load runs (benches/load.sh). The customer and the server must
//! exist already (`berth admin customer add` / `server add`, so the password is a real one).
//!
//! ```sh
//! cargo bench -p berth-benches --bench seed -- --database sqlite:///tmp/x/berth.db \
//!     --customer kratos --server server1 --containers 9999
//! ```
//!
//! Without `--database` it prints its usage and exits 0 (so a plain `cargo bench` passes).

use berth_store::{accounts, servers, Store};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let (mut database, mut customer, mut server, mut n) = (None, None, None, 10_000usize);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--database" => database = Some(value),
            "--customer" => customer = Some(value),
            "--server" => server = Some(value),
            "--containers" => n = value.parse().expect("--containers N"),
            other => panic!("unknown flag {other}"),
        }
    }
    let Some(database) = database else {
        eprintln!("usage: seed --database URL --customer USERNAME --server NAME [--containers N]");
        return;
    };
    let customer = customer.expect("--customer");
    let server = server.expect("--server");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Store::open(&database).await.expect("open the database");
        let mut conn = store.read().await.unwrap();
        let customer_id =
            accounts::customer_by_username(&mut conn, &customer).await.unwrap().expect("no such customer").id;
        let server_id = servers::by_name(&mut conn, &server).await.unwrap().expect("no such server").id;
        drop(conn);
        let started = std::time::Instant::now();
        berth_benches::seed_containers(&store, customer_id, server_id, n, "load").await;
        eprintln!("seeded {n} containers in {:.1?}", started.elapsed());
        store.close().await;
    });
}
