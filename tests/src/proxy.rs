//! A TCP proxy on loopback that a test can freeze: while frozen, it holds every byte and every new
//! connection without answering, the way a database behind a network partition looks to a client
//! (no reset, no refusal, only silence).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FreezableProxy {
    /// Where clients connect (127.0.0.1, a free port).
    pub address: SocketAddr,
    frozen: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    /// Starts relaying 127.0.0.1:PORT to `upstream`, on the current tokio runtime.
    pub async fn start(upstream: SocketAddr) -> FreezableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (frozen, watcher) = watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watcher = watcher.clone();
                tokio::spawn(async move {
                    thawed(&watcher).await;
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        relay(client_read, server_write, watcher.clone()),
                        relay(server_read, client_write, watcher),
                    );
                });
            }
        });
        FreezableProxy {
            address,
            frozen,
            accept,
        }
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn thawed(watcher: &watch::Receiver<bool>) {
    let mut watcher = watcher.clone();
    let _ = watcher.wait_for(|frozen| !frozen).await;
}

/// Copies `from` to `to`, holding what it read while the proxy is frozen.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    watcher: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        thawed(&watcher).await;
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
