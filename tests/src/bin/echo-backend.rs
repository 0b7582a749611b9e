//! `echo-backend --listen ADDR --name POD [--default-backend | --tcp]`: a
//! stand-in pod for the demo: HTTP (see `xingress_tests::backend`), or with
//! `--tcp` a TCP pod that greets each connection with its name and echoes
//! (see `xingress_tests::l4::TcpPod`).

use std::net::SocketAddr;

use xingress_tests::backend::{self, Mode};

fn main() -> anyhow::Result<()> {
    let mut listen: Option<SocketAddr> = None;
    let mut name = String::from("pod");
    let mut mode = Mode::Echo;
    let mut tcp = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                listen = Some(
                    args.next()
                        .ok_or_else(|| anyhow::anyhow!("--listen ADDR"))?
                        .parse()?,
                )
            }
            "--name" => name = args.next().ok_or_else(|| anyhow::anyhow!("--name POD"))?,
            "--default-backend" => mode = Mode::DefaultBackend,
            "--tcp" => tcp = true,
            other => anyhow::bail!(
                "unknown argument {other:?}; usage: echo-backend --listen ADDR --name POD [--default-backend | --tcp]"
            ),
        }
    }
    let listen = listen.ok_or_else(|| anyhow::anyhow!("--listen ADDR is required"))?;
    let _pod = if tcp {
        Err(xingress_tests::l4::TcpPod::start(listen, &name)?)
    } else {
        Ok(backend::start(listen, &name, mode)?)
    };
    eprintln!("echo-backend {name} listening on {listen}");
    // The backend runs on its own thread until the process is killed.
    loop {
        std::thread::park();
    }
}
