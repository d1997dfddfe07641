//! A small HTTP/1.1 client for nm-daemon's API, over the Unix socket or TCP.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ErrorBody;

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Its Unix socket (`data_dir/nm.sock`); the file's mode is the credential.
    Unix(PathBuf),
    /// Its TCP address, with the bearer token.
    Tcp {
        /// `HOST:PORT`.
        addr: String,
        /// The API token.
        token: String,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix socket {}", p.display()),
            Self::Tcp { addr, .. } => write!(f, "http://{addr}"),
        }
    }
}

/// A failed request. The daemon's state is unchanged unless it answered with success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing accepted the connection: the daemon is not running there (or the path/address is
    /// wrong).
    #[error("cannot reach nm-daemon at {endpoint} (is the daemon running?)")]
    Connect {
        /// Where we tried.
        endpoint: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke or the answer was not HTTP.
    #[error("talking to nm-daemon at {endpoint}: {detail}")]
    Transport {
        /// Where.
        endpoint: String,
        /// What broke.
        detail: String,
    },
    /// The daemon refused the request; `message` is its one-line reason.
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The daemon's reason.
        message: String,
    },
    /// The answer's body was not the expected JSON.
    #[error("unexpected answer from nm-daemon: {0}")]
    Decode(String),
}

/// A client bound to one endpoint. Each request opens its own connection (requests are rare and
/// the Unix socket connect costs microseconds).
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
}

impl Client {
    /// A client for `endpoint`.
    #[must_use]
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }

    /// Where it connects.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `GET path` and decode the JSON answer.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.send(Method::GET, path, None).await?;
        decode(resp).await
    }

    /// `POST path` with a JSON body and decode the JSON answer.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let resp = self.send(Method::POST, path, Some(body)).await?;
        decode(resp).await
    }

    /// `GET path` and hand back the streaming response (for logs with `follow`). Non-2xx answers
    /// become [`ClientError::Refused`].
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn get_stream(&self, path: &str) -> Result<Response<Incoming>, ClientError> {
        let resp = self.send(Method::GET, path, None).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(refused(resp).await)
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let ep = self.endpoint.to_string();
        let connect_err = |source| ClientError::Connect {
            endpoint: ep.clone(),
            source,
        };
        let transport = |e: hyper::Error| ClientError::Transport {
            endpoint: ep.clone(),
            detail: e.to_string(),
        };
        let mut req = Request::builder().method(method).uri(path);
        match &self.endpoint {
            Endpoint::Unix(_) => req = req.header(hyper::header::HOST, "localhost"),
            Endpoint::Tcp { addr, token } => {
                req = req
                    .header(hyper::header::HOST, addr.as_str())
                    .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
            }
        }
        let req = match body {
            Some(b) => req
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(
                    Full::new(Bytes::from(b))
                        .map_err(|never| match never {})
                        .boxed(),
                ),
            None => req.body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed(),
            ),
        }
        .map_err(|e| ClientError::Transport {
            endpoint: ep.clone(),
            detail: e.to_string(),
        })?;
        let mut sender = match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?;
                handshake(stream).await.map_err(transport)?
            }
            Endpoint::Tcp { addr, .. } => {
                let stream = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(connect_err)?;
                let _ = stream.set_nodelay(true);
                handshake(stream).await.map_err(transport)?
            }
        };
        sender.send_request(req).await.map_err(transport)
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn handshake<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Body>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await; // ends with the response body; errors surface on the request side
    });
    Ok(sender)
}

async fn decode<T: DeserializeOwned>(resp: Response<Incoming>) -> Result<T, ClientError> {
    if !resp.status().is_success() {
        return Err(refused(resp).await);
    }
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

async fn refused(resp: Response<Incoming>) -> ClientError {
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message = serde_json::from_slice::<ErrorBody>(&bytes)
        .map(|b| b.error)
        .unwrap_or_else(|_| {
            if status == StatusCode::UNAUTHORIZED {
                "unauthorized: missing or wrong API token (see --token-file)".to_owned()
            } else {
                format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes).trim())
            }
        });
    ClientError::Refused {
        status: status.as_u16(),
        message,
    }
}
