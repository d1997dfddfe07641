//! A whole nm node inside another program: its servers, the API on TCP and on
//! `data_dir/nm.sock`, and with `standby_port` a standby node manager (a second process of this
//! same program, started with `--standby`) that takes over if this one dies.
//!
//! ```sh
//! cargo run -p nm-node --example embed_node -- --config examples/quickstart.toml
//! ```
//!
//! `nm-cli --config FILE status` talks to it as to `nm-daemon`; `nm-cli shutdown` or Ctrl-C stops
//! it (servers keep running unless `shutdown --stop-servers`).

use nm_node::standby::Watched;
use nm_node::{Node, Origin, StartOptions, StopReason};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .ok_or("usage: embed_node --config FILE [--standby]")?;
    let cfg = nm_node::config::load(path.as_ref())?;
    // the standby that the node launches runs this same program with `--standby`
    let origin = if args.iter().any(|a| a == "--standby") {
        match nm_node::standby::watch(&cfg).await? {
            Watched::Left => return Ok(()),
            Watched::TookOver(origin) => origin,
        }
    } else {
        Origin::Fresh(nm_node::claim_data_dir(&cfg)?)
    };
    let mut node = Node::start_with(cfg, origin, StartOptions::default()).await?;
    let status = node.handle().status();
    println!(
        "node {} (pid {}) runs {:?}",
        status.node, status.pid, status.servers
    );
    let why = tokio::select! {
        _ = tokio::signal::ctrl_c() => StopReason::Signal("SIGINT"),
        why = node.stop_requested() => why,
    };
    println!("stopping: {why:?}");
    node.shutdown(why).await?;
    Ok(())
}
