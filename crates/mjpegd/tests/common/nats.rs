//! NATS node setup for the bus tests: a `nats-server` on loopback, and in-process mjpegd nodes
//! that publish their cameras on it or serve the cameras they discover there.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mjpegd::config::{BusSection, OneOrMany, PublishSection};
use mjpegd::http::HttpConfig;
use mjpegd::hub::CameraConfig;
use mjpegd::server::{Server, ServerConfig};

use super::{TestServer, WAIT, free_port};

/// A `nats-server` process on loopback, killed on drop.
pub struct Nats {
    pub child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
}

impl Nats {
    pub fn start(extra: &[&str]) -> Nats {
        Nats::start_on(free_port(), extra.iter().map(|s| s.to_string()).collect())
    }

    pub fn start_on(port: u16, args: Vec<String>) -> Nats {
        let mut n = Nats {
            child: None,
            port,
            args,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts an in-process mjpegd with these cameras on the bus; `/api/state` is public.
pub async fn node(cameras: Vec<CameraConfig>, bus: BusSection) -> TestServer {
    mjpegd::crypto::install_crypto_provider();
    let names: Vec<String> = cameras.iter().map(|c| c.name.clone()).collect();
    let bus = mjpegd::config::check_bus(&bus, &names)
        .expect("valid bus settings")
        .expect("the bus is used");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let http = HttpConfig {
        public_state: true,
        ..HttpConfig::default()
    };
    let srv = Server::new(cameras, http, ServerConfig::default(), shutdown.clone()).with_bus(bus);
    let state = srv.state().clone();
    TestServer {
        addr,
        state,
        shutdown,
        task: Some(tokio::spawn(srv.run(listener))),
    }
}

pub fn publishing(url: &str) -> BusSection {
    BusSection {
        url: Some(OneOrMany::One(url.to_owned())),
        publish: Some(PublishSection::All(true)),
        ..BusSection::default()
    }
}

pub fn edge(url: &str) -> BusSection {
    BusSection {
        cameras_from: Some(url.to_owned()),
        idle_timeout: Some(1),
        ..BusSection::default()
    }
}
