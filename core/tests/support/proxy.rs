//! A TCP forwarder on 127.0.0.1 that a test can cut: it drops every connection and refuses
//! new ones until restored. It stands for a network failure between one store and Redis while
//! others keep their link.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    /// Milliseconds each chunk waits before it is forwarded: a slower network.
    delay_ms: Arc<AtomicU64>,
    /// Milliseconds the first reply on each new connection waits: a slow handshake.
    handshake_ms: Arc<AtomicU64>,
}

impl Proxy {
    pub fn to(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let handshake_ms = Arc::new(AtomicU64::new(0));
        let (up2, open2, stop2) = (up.clone(), open.clone(), stop.clone());
        let (delay2, handshake2) = (delay_ms.clone(), handshake_ms.clone());
        std::thread::spawn(move || {
            while !stop2.load(SeqCst) {
                match listener.accept() {
                    Ok((client, _)) if up2.load(SeqCst) => {
                        client.set_nonblocking(false).expect("blocking");
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                            continue;
                        };
                        // As the client and Redis themselves do: else a reply the proxy
                        // forwards in two writes waits on a delayed ACK (40 ms).
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let mut list = open2.lock().unwrap();
                        list.push(client.try_clone().unwrap());
                        list.push(server.try_clone().unwrap());
                        pump(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            delay2.clone(),
                            0,
                        );
                        pump(server, client, delay2.clone(), handshake2.load(SeqCst));
                    }
                    Ok((client, _)) => drop(client),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Proxy {
            port,
            up,
            open,
            stop,
            delay_ms,
            handshake_ms,
        }
    }

    /// Delays the first reply on each connection made from now on by `delay`, and nothing
    /// after it: connecting is slow, calls on the connection are not.
    pub fn slow_handshakes(&self, delay: Duration) {
        self.handshake_ms.store(delay.as_millis() as u64, SeqCst);
    }

    /// Delays what the proxy forwards, each way, by `delay`.
    pub fn slow_down(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, SeqCst);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.up.store(true, SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        self.cut();
    }
}

/// Forwards `from` to `to`, each chunk after `delay_ms`, the first one after `first_ms` too.
fn pump(mut from: TcpStream, mut to: TcpStream, delay_ms: Arc<AtomicU64>, mut first_ms: u64) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let delay = delay_ms.load(SeqCst) + std::mem::take(&mut first_ms);
                    if delay > 0 {
                        std::thread::sleep(Duration::from_millis(delay));
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}
