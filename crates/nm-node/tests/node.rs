//! A node run in-process (`Node::start`), driven through its API on the Unix socket: what an
//! embedding program gets, and the rules that span crates.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failure is the test's failure

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nm_api::client::{Client, ClientError, Endpoint};
use nm_api::{CommandReply, NodeStatus, ShutdownReply, ShutdownRequest};
use nm_node::{Node, NodeExit, StopReason};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// `nm.toml` in `dir` with `web` (a plain server) and `rest` (given after it, TOML).
fn config(dir: &Path, rest: &str) -> nm_node::config::NodeConfig {
    let path = dir.join("nm.toml");
    std::fs::write(
        &path,
        format!(
            "node = \"inproc\"\ndata_dir = \"data\"\nlisten = \"127.0.0.1:{}\"\n{rest}\n\
             [[server]]\nname = \"web\"\ncommand = [\"sleep\", \"600\"]\n\
             [[server]]\nname = \"db\"\ncommand = [\"sleep\", \"601\"]\nauto_start = false\n",
            free_port()
        ),
    )
    .unwrap();
    nm_node::config::load(&path).unwrap()
}

/// Stops the node through the API (servers too) and checks how it ended.
async fn stop(mut node: Node, client: &Client) {
    let (reply, why) = tokio::join!(
        client.post::<_, ShutdownReply>("/v1/shutdown", &ShutdownRequest { stop_servers: true }),
        async {
            let why = node.stop_requested().await;
            let exit = node.shutdown(why.clone()).await.unwrap();
            assert_eq!(exit, NodeExit::Stopped);
            why
        }
    );
    assert_eq!(why, StopReason::Api(ShutdownRequest { stop_servers: true }));
    assert_eq!(reply.unwrap().stopped, ["web"]);
}

#[tokio::test]
async fn a_node_started_in_process_serves_its_api_and_suggests_a_mistyped_server() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path(), "")).await.unwrap();
    let client = Client::new(Endpoint::Unix(dir.path().join("data/nm.sock")));
    let status: NodeStatus = client.get("/v1/status").await.unwrap();
    let here = node.handle().status();
    assert_eq!((status.node.as_str(), status.pid), ("inproc", here.pid));
    assert_eq!(status.servers.get("RUNNING"), Some(&1), "{status:?}");
    match client.get::<NodeStatus>("/v1/servers/wbe").await {
        Err(ClientError::Refused { status, message }) => {
            assert_eq!(status, 404);
            assert_eq!(message, "no server named \"wbe\" (did you mean \"web\"?)");
        }
        other => panic!("{other:?}"),
    }
    match client
        .get::<NodeStatus>("/v1/servers/nothing-like-it")
        .await
    {
        Err(ClientError::Refused { message, .. }) => {
            assert_eq!(message, "no server named \"nothing-like-it\"");
        }
        other => panic!("{other:?}"),
    }
    stop(node, &client).await;
}

#[tokio::test]
async fn an_ha_managed_server_starts_only_through_the_ha_manager_of_a_primary() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ha = format!(
        "cluster_key_file = \"cluster.key\"\n[ha]\npeer = \"other\"\n\
         peer_address = \"127.0.0.1:{}\"\nlisten = \"127.0.0.1:{}\"\nservers = [\"db\"]\n\
         fence_command = [\"false\"]\n",
        free_port(),
        free_port()
    );
    let node = Node::start(config(dir.path(), &ha)).await.unwrap();
    let client = Client::new(Endpoint::Unix(dir.path().join("data/nm.sock")));
    // HA is stopped on a new pair: this node is not primary, the HA manager refuses
    for command in ["start", "restart"] {
        match client
            .post::<_, CommandReply>(&format!("/v1/servers/db/{command}"), &())
            .await
        {
            Err(ClientError::Refused { status, message }) => {
                assert_eq!(status, 409);
                assert!(
                    message.contains("HA-managed") && message.contains("not primary"),
                    "{message}"
                );
            }
            other => panic!("{command}: {other:?}"),
        }
    }
    let snap = node.handle().snapshot();
    let db = snap
        .servers
        .values()
        .find(|s| s.view.name.as_str() == "db")
        .unwrap();
    assert_eq!(db.pid, None, "never started");
    // a server outside the pair is the supervisor's alone
    let reply: CommandReply = client
        .post("/v1/servers/web/restart?wait=5", &())
        .await
        .unwrap();
    assert!(reply.changed && reply.settled, "{reply:?}");
    stop(node, &client).await;
}
