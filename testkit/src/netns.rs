//! Two hosts on one machine: a client and a server network namespace joined by a veth
//! pair, so that bytes cross a real network device (MTU, segmentation offload, qdisc)
//! instead of loopback. Optionally the link is rate-limited (`tbf` on both ends) and
//! lossy (an nftables rule in each namespace drops that share of arriving packets, at
//! random; dropping on output would hand the sender `EPERM` instead of a loss).
//!
//! The namespaces are named `sluice-<pid>-<n>-{c,s}`, hold the only addresses used
//! ([`CLIENT_ADDR`], [`SERVER_ADDR`], a private /30), and are deleted on drop; those a
//! killed process left behind are deleted by the next [`Link::create`]. The root
//! namespace is never changed. Needs root, `ip`, and `tc` / `nft` when a rate / loss is
//! asked for: [`Link::unavailable`] says what is missing.
//!
//! A socket belongs to the namespace of the thread that created it, for its whole life.
//! [`Link::enter`] moves the calling thread (and the threads it starts afterwards, such
//! as a runtime's workers) into a namespace; [`Link::in_server`] runs a closure on a
//! thread in the server's namespace, so a server started there listens on the link.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The client end's address (in the client namespace).
pub const CLIENT_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 213, 0, 1));
/// The server end's address (in the server namespace).
pub const SERVER_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 213, 0, 2));
/// The veth end's name inside each namespace.
const DEVICE: &str = "veth0";

/// The path between the two namespaces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSpec {
    /// MTU of both veth ends.
    pub mtu: u32,
    /// Rate limit of each direction in Mbit/s (a `tbf` qdisc on both ends), if any.
    pub rate_mbit: Option<u64>,
    /// Share of the packets arriving at each end that are dropped, in 0.0..1.0.
    pub loss: f64,
    /// `None`: veth passes a GSO batch (up to 10 datagrams) whole, as one packet.
    /// `Some(gro)`: each end cuts batches into datagrams as a NIC puts them on the wire
    /// (`tx-udp-segmentation off`), and the receiving end merges them back (GRO) or not.
    pub gro: Option<bool>,
}

impl Default for LinkSpec {
    fn default() -> Self {
        Self {
            mtu: 1500,
            rate_mbit: None,
            loss: 0.0,
            gro: None,
        }
    }
}

impl LinkSpec {
    /// Parses `veth[,rate=1gbit|2500mbit][,loss=0.1%|0.001][,mtu=9000][,gro=on|off]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split(',');
        if parts.next() != Some("veth") {
            return Err(format!("link {text:?}: must start with \"veth\""));
        }
        let mut spec = Self::default();
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("link option {part:?}: expected key=value"))?;
            let bad = |what: &str| format!("link option {part:?}: {what}");
            match key {
                "mtu" => {
                    spec.mtu = value.parse().map_err(|_| bad("not a number"))?;
                    if !(1280..=65535).contains(&spec.mtu) {
                        return Err(bad("MTU must be in 1280..=65535"));
                    }
                }
                "rate" => {
                    spec.rate_mbit = Some(
                        parse_rate(value).ok_or_else(|| bad("expected e.g. 1gbit, 2500mbit"))?,
                    )
                }
                "loss" => {
                    spec.loss = match value.strip_suffix('%') {
                        Some(p) => p.parse::<f64>().map(|p| p / 100.0),
                        None => value.parse::<f64>(),
                    }
                    .map_err(|_| bad("expected e.g. 1% or 0.01"))?;
                    if !(0.0..1.0).contains(&spec.loss) {
                        return Err(bad("loss must be in 0..100%"));
                    }
                }
                "gro" => {
                    spec.gro = Some(match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(bad("expected on or off")),
                    })
                }
                _ => return Err(bad("unknown (mtu, rate, loss, gro)")),
            }
        }
        Ok(spec)
    }

    /// The spec as `parse` reads it.
    pub fn describe(&self) -> String {
        let mut text = format!("veth,mtu={}", self.mtu);
        if let Some(rate) = self.rate_mbit {
            text.push_str(&format!(",rate={rate}mbit"));
        }
        if self.loss > 0.0 {
            text.push_str(&format!(",loss={}%", self.loss * 100.0));
        }
        if let Some(gro) = self.gro {
            text.push_str(if gro { ",gro=on" } else { ",gro=off" });
        }
        text
    }
}

fn parse_rate(value: &str) -> Option<u64> {
    let lower = value.to_ascii_lowercase();
    let (number, scale) = if let Some(n) = lower.strip_suffix("gbit") {
        (n, 1000.0)
    } else if let Some(n) = lower.strip_suffix("mbit") {
        (n, 1.0)
    } else {
        return None;
    };
    let mbit = number.parse::<f64>().ok()? * scale;
    (mbit >= 1.0).then_some(mbit as u64)
}

/// A client and a server namespace joined by a veth pair; deleted on drop.
#[derive(Debug)]
pub struct Link {
    client_ns: String,
    server_ns: String,
    spec: LinkSpec,
}

static LINKS: AtomicU32 = AtomicU32::new(0);

impl Link {
    /// Why a link with `spec` cannot be made here (not root, a command missing), if so.
    pub fn unavailable(spec: &LinkSpec) -> Option<String> {
        if !is_root() {
            return Some("network namespaces need root".into());
        }
        let mut tools = vec!["ip"];
        if spec.rate_mbit.is_some() {
            tools.push("tc");
        }
        if spec.loss > 0.0 {
            tools.push("nft");
        }
        if spec.gro.is_some() {
            tools.push("ethtool");
        }
        let missing: Vec<&str> = tools.into_iter().filter(|t| !on_path(t)).collect();
        (!missing.is_empty()).then(|| {
            format!(
                "missing {} (Debian: apt-get install iproute2 nftables ethtool)",
                missing.join(", ")
            )
        })
    }

    /// Makes both namespaces, the veth pair, its addresses, rate limit and loss.
    pub fn create(spec: LinkSpec) -> io::Result<Link> {
        if let Some(why) = Self::unavailable(&spec) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, why));
        }
        remove_stale();
        let n = LINKS.fetch_add(1, Ordering::Relaxed);
        let base = format!("sluice-{}-{n}", std::process::id());
        let link = Link {
            client_ns: format!("{base}-c"),
            server_ns: format!("{base}-s"),
            spec,
        };
        // From here on, drop removes whatever was made.
        run("ip", &["netns", "add", &link.client_ns])?;
        run("ip", &["netns", "add", &link.server_ns])?;
        let mtu = spec.mtu.to_string();
        run(
            "ip",
            &[
                "link",
                "add",
                "name",
                DEVICE,
                "netns",
                &link.client_ns,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                DEVICE,
                "netns",
                &link.server_ns,
                "mtu",
                &mtu,
            ],
        )?;
        for (ns, addr) in [
            (&link.client_ns, CLIENT_ADDR),
            (&link.server_ns, SERVER_ADDR),
        ] {
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/30"),
                    "dev",
                    DEVICE,
                ],
            )?;
            run("ip", &["-n", ns, "link", "set", DEVICE, "up"])?;
            if let Some(gro) = spec.gro {
                let gro = if gro { "on" } else { "off" };
                run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        ns,
                        "ethtool",
                        "-K",
                        DEVICE,
                        "tx-udp-segmentation",
                        "off",
                        "gro",
                        gro,
                    ],
                )?;
            }
            if let Some(mbit) = spec.rate_mbit {
                // A burst of 10 ms at the rate (at least 64 KiB): tbf needs one of at
                // least rate / HZ to reach its rate at all.
                let burst = (mbit * 1_000_000 / 8 / 100).max(64 << 10).to_string();
                let rate = format!("{mbit}mbit");
                run(
                    "tc",
                    &[
                        "-n", ns, "qdisc", "add", "dev", DEVICE, "root", "tbf", "rate", &rate,
                        "burst", &burst, "latency", "20ms",
                    ],
                )?;
            }
            if spec.loss > 0.0 {
                let ppm = (spec.loss * 1e6).round() as u64;
                let rules = format!(
                    "table inet sluice {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    numgen random mod 1000000 < {ppm} counter drop\n  }}\n}}\n"
                );
                run_with_input("ip", &["netns", "exec", ns, "nft", "-f", "-"], &rules)?;
            }
        }
        Ok(link)
    }

    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// Moves the calling thread into the client namespace: sockets it creates from now
    /// on, and threads it starts, are on the client end.
    pub fn enter_client(&self) -> io::Result<()> {
        enter(&self.client_ns)
    }

    /// Runs `f` on a thread in the server namespace and returns its result.
    pub fn in_server<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&self.server_ns)?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("the thread in the server namespace panicked"))?
        })
    }

    /// Takes both veth ends down (no packet passes, sends fail) or brings them up.
    pub fn set_up(&self, up: bool) -> io::Result<()> {
        let state = if up { "up" } else { "down" };
        for ns in [&self.client_ns, &self.server_ns] {
            run("ip", &["-n", ns, "link", "set", DEVICE, state])?;
        }
        Ok(())
    }

    /// Packets the loss rules have dropped so far, both ends together.
    pub fn dropped_packets(&self) -> io::Result<u64> {
        if self.spec.loss == 0.0 {
            return Ok(0);
        }
        let mut total = 0;
        for ns in [&self.client_ns, &self.server_ns] {
            let out = output(
                "ip",
                &[
                    "netns", "exec", ns, "nft", "list", "chain", "inet", "sluice", "input",
                ],
            )?;
            total += out
                .split_whitespace()
                .skip_while(|w| *w != "packets")
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| io::Error::other(format!("no packet counter in {out:?}")))?;
        }
        Ok(total)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, and with it the other end.
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

fn enter(ns: &str) -> io::Result<()> {
    let file = File::open(format!("/run/netns/{ns}"))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&file),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| io::Error::other(format!("entering network namespace {ns}: {e}")))
}

/// Deletes the namespaces of processes that are gone (a test killed mid-run).
fn remove_stale() {
    let Ok(list) = output("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let pid = name
            .strip_prefix("sluice-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = run("ip", &["netns", "del", name]);
            }
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn on_path(tool: &str) -> bool {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(tool).is_file())
}

fn command(program: &str) -> Command {
    // `ip`, `tc` and `nft` live in sbin, which a non-login PATH may lack.
    let mut cmd = Command::new(program);
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    cmd
}

fn run(program: &str, args: &[&str]) -> io::Result<()> {
    output(program, args).map(drop)
}

fn output(program: &str, args: &[&str]) -> io::Result<String> {
    let out = command(program).args(args).output()?;
    check(program, args, &out)
}

fn run_with_input(program: &str, args: &[&str], input: &str) -> io::Result<()> {
    use std::io::Write;
    let mut child = command(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    check(program, args, &out).map(drop)
}

fn check(program: &str, args: &[&str], out: &std::process::Output) -> io::Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_specs_parse_and_print_back() {
        let spec = LinkSpec::parse("veth,rate=2.5gbit,loss=0.1%,mtu=9000,gro=off").unwrap();
        assert_eq!(
            spec,
            LinkSpec {
                mtu: 9000,
                rate_mbit: Some(2500),
                loss: 0.001,
                gro: Some(false),
            }
        );
        assert_eq!(LinkSpec::parse(&spec.describe()).unwrap(), spec);
        assert_eq!(LinkSpec::parse("veth").unwrap(), LinkSpec::default());
        assert_eq!(LinkSpec::parse("veth,loss=0.01").unwrap().loss, 0.01);
        for (bad, why) in [
            ("lo", "must start with \"veth\""),
            ("veth,mtu=100", "MTU must be in 1280..=65535"),
            ("veth,rate=fast", "expected e.g. 1gbit"),
            ("veth,loss=100%", "loss must be in 0..100%"),
            ("veth,speed=1", "unknown"),
            ("veth,gro=yes", "expected on or off"),
            ("veth,mtu", "expected key=value"),
        ] {
            let err = LinkSpec::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
