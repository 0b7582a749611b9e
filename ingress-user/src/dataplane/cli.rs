//! `xingress xdp stats | flows`.

use std::process::ExitCode;

use crate::cli::{EXIT_CONFIG, XdpCommand};

pub fn main(cmd: &XdpCommand) -> ExitCode {
    let what = match cmd {
        XdpCommand::Stats(_) => "xdp stats",
        XdpCommand::Flows(_) => "xdp flows",
    };
    eprintln!(
        "xingress {what}: not implemented yet: reading the pinned maps under /sys/fs/bpf/xingress \
         arrives with the XDP data plane stage; the running agent's counters are on /metrics \
         (xingress_xdp_packets_total)"
    );
    ExitCode::from(EXIT_CONFIG)
}
