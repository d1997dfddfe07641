//! Health probes: exec, tcp connect, http GET, each bounded by the check's timeout.

use std::process::Stdio;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::core::{Pid, ProbeResult};
use crate::spec::{HealthSpec, HttpTarget, Probe, ServerName};

/// Runs one probe of `server` (whose leader is `pid`, given to exec probes as `NM_SERVER_PID`).
pub(crate) async fn probe(server: &ServerName, pid: Option<Pid>, spec: &HealthSpec) -> ProbeResult {
    let run = async {
        match &spec.probe {
            Probe::Exec(argv) => exec(server, pid, argv.as_slice()).await,
            Probe::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map(drop)
                .map_err(|e| format!("connect {addr}: {e}")),
            Probe::Http(target) => http(target).await,
        }
    };
    match tokio::time::timeout(spec.timeout, run).await {
        Ok(Ok(())) => ProbeResult::Healthy,
        Ok(Err(why)) => ProbeResult::Unhealthy(why),
        Err(_) => ProbeResult::Unhealthy(format!(
            "timed out after {}",
            humantime::format_duration(spec.timeout)
        )),
    }
}

async fn exec(server: &ServerName, pid: Option<Pid>, argv: &[String]) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env("NM_SERVER_NAME", server.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(pid) = pid {
        cmd.env("NM_SERVER_PID", pid.to_string());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    // On timeout this future is dropped: kill_on_drop kills the probe (tokio reaps it).
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} {status}", argv[0]))
    }
}

async fn http(target: &HttpTarget) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(target.authority.as_str())
        .await
        .map_err(|e| format!("connect {}: {e}", target.authority))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET {}: {e}", target.url))?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(target.path.as_str())
        .header(hyper::header::HOST, target.authority.as_str())
        .header(hyper::header::USER_AGENT, "nm-health")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {}: {e}", target.url))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {}: {e}", target.url));
    conn.abort(); // the status line is all we need
    let status = resp?.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {}: HTTP {status}", target.url))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::spec::Argv;

    fn spec(probe: Probe) -> HealthSpec {
        HealthSpec {
            probe,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            failure_threshold: 1,
            start_timeout: Duration::from_secs(5),
        }
    }
    fn name() -> ServerName {
        ServerName::new("t").unwrap()
    }
    fn argv(a: &[&str]) -> Argv {
        Argv::new(a.iter().map(|s| (*s).to_owned()).collect()).unwrap()
    }

    #[tokio::test]
    async fn exec_probes_follow_the_exit_status() {
        assert_eq!(
            probe(&name(), None, &spec(Probe::Exec(argv(&["true"])))).await,
            ProbeResult::Healthy
        );
        assert!(matches!(
            probe(&name(), None, &spec(Probe::Exec(argv(&["false"])))).await,
            ProbeResult::Unhealthy(_)
        ));
        let mut slow = spec(Probe::Exec(argv(&["sleep", "5"])));
        slow.timeout = Duration::from_millis(100);
        assert!(
            matches!(probe(&name(), None, &slow).await, ProbeResult::Unhealthy(w) if w.contains("timed out"))
        );
    }

    #[tokio::test]
    async fn tcp_and_http_probes_use_real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let ok = String::from_utf8_lossy(&buf[..n]).starts_with("GET /ok ");
                let line = if ok {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {line}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        assert_eq!(
            probe(&name(), None, &spec(Probe::Tcp(addr.to_string()))).await,
            ProbeResult::Healthy
        );
        let ok = HttpTarget::parse(&format!("http://{addr}/ok")).unwrap();
        assert_eq!(
            probe(&name(), None, &spec(Probe::Http(ok))).await,
            ProbeResult::Healthy
        );
        let bad = HttpTarget::parse(&format!("http://{addr}/bad")).unwrap();
        assert!(
            matches!(probe(&name(), None, &spec(Probe::Http(bad))).await, ProbeResult::Unhealthy(w) if w.contains("503"))
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            probe(&name(), None, &spec(Probe::Tcp(closed.to_string()))).await,
            ProbeResult::Unhealthy(_)
        ));
    }
}
