//! Process CPU time and memory from Linux `/proc`, to measure the server under test (and the
//! load client itself, to tell when the client rather than the server is the bottleneck).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A process to sample: a PID or this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// Another process.
    Pid(u32),
    /// The calling process.
    Myself,
}

impl Proc {
    fn path(self, file: &str) -> PathBuf {
        match self {
            Proc::Pid(pid) => format!("/proc/{pid}/{file}").into(),
            Proc::Myself => format!("/proc/self/{file}").into(),
        }
    }

    /// User + system CPU time of all the process's threads (including exited ones) so far.
    pub fn cpu_time(self) -> io::Result<Duration> {
        let path = self.path("stat");
        let stat = std::fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
        let ticks = parse_stat_cpu_ticks(&stat).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected format of {}", path.display()),
            )
        })?;
        Ok(Duration::from_secs_f64(
            ticks as f64 / clock_ticks_per_sec() as f64,
        ))
    }

    /// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...) in bytes.
    pub fn status_bytes(self, field: &str) -> io::Result<Option<u64>> {
        let path = self.path("status");
        let status = std::fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
        Ok(parse_status_kb(&status, field).map(|kb| kb * 1024))
    }
}

/// `utime + stime` from the text of `/proc/PID/stat`, in clock ticks.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: fields are counted from
    // the last `)`. After it comes field 3 (state); utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// The kernel's USER_HZ, from the auxiliary vector (`AT_CLKTCK`) since `sysconf` would need
/// `unsafe`; 100, its value on every mainstream architecture, if that cannot be read.
fn clock_ticks_per_sec() -> u64 {
    const AT_CLKTCK: u64 = 17;
    let word = std::mem::size_of::<usize>();
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| {
            auxv.chunks_exact(2 * word).find_map(|pair| {
                let read = |b: &[u8]| -> u64 {
                    let mut buf = [0u8; 8];
                    buf[..word].copy_from_slice(b);
                    u64::from_ne_bytes(buf)
                };
                let (key, value) = pair.split_at(word);
                (read(key) == AT_CLKTCK).then(|| read(value))
            })
        })
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

/// A TCP socket state as numbered in `/proc/net/tcp` (the kernel's `TCP_*` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpState(pub u8);

impl TcpState {
    /// `TCP_ESTABLISHED`.
    pub const ESTABLISHED: TcpState = TcpState(1);

    /// Whether the socket whose state this is has closed its side (sent or is sending FIN, or
    /// is gone): FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE, LAST_ACK or CLOSING.
    pub fn closed_locally(self) -> bool {
        matches!(self.0, 4..=7 | 9 | 11)
    }
}

/// Every TCP socket of this network namespace, keyed by (local, remote) address, from
/// `/proc/net/tcp` and `/proc/net/tcp6` (IPv4-mapped IPv6 addresses folded to IPv4).
///
/// This sees the server's side of a loopback connection, so a close can be observed without
/// reading: the FIN of a connection whose receive window is zero sits behind unsent data.
pub fn tcp_sockets() -> io::Result<HashMap<(SocketAddr, SocketAddr), TcpState>> {
    let mut map = HashMap::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            // No IPv6 in this kernel: nothing to add.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("reading {path}: {e}"))),
        };
        for line in text.lines().skip(1) {
            if let Some((local, remote, state)) = parse_tcp_line(line) {
                map.insert((local, remote), state);
            }
        }
    }
    Ok(map)
}

fn parse_tcp_line(line: &str) -> Option<(SocketAddr, SocketAddr, TcpState)> {
    let mut fields = line.split_ascii_whitespace().skip(1);
    let local = parse_proc_addr(fields.next()?)?;
    let remote = parse_proc_addr(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    Some((local, remote, TcpState(state)))
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6). The address is printed as 32-bit
/// words in host byte order, the port as a plain number.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// CPU use and memory of a process over an interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: f64,
    /// The largest resident set seen: `VmHWM` (the kernel's own high-water mark) or the largest
    /// sampled `VmRSS`, whichever is larger, in bytes.
    pub peak_rss: u64,
    /// The resident set at the end, in bytes.
    pub rss_end: u64,
}

/// Measures a process from [`Meter::start`] to [`Meter::finish`]; call [`Meter::sample`] in
/// between to catch RSS peaks on kernels without `VmHWM`.
#[derive(Debug)]
pub struct Meter {
    proc_: Proc,
    cpu0: Duration,
    t0: Instant,
    peak_rss: u64,
}

impl Meter {
    /// Takes the starting CPU time.
    pub fn start(proc_: Proc) -> io::Result<Self> {
        let cpu0 = proc_.cpu_time()?;
        let mut m = Meter {
            proc_,
            cpu0,
            t0: Instant::now(),
            peak_rss: 0,
        };
        m.sample();
        Ok(m)
    }

    /// Notes the current RSS (errors ignored: the process may be exiting).
    pub fn sample(&mut self) {
        if let Ok(Some(rss)) = self.proc_.status_bytes("VmRSS") {
            self.peak_rss = self.peak_rss.max(rss);
        }
    }

    /// Ends the interval.
    pub fn finish(mut self) -> io::Result<Usage> {
        let cpu1 = self.proc_.cpu_time()?;
        let wall = self.t0.elapsed().as_secs_f64();
        self.sample();
        let hwm = self.proc_.status_bytes("VmHWM")?.unwrap_or(0);
        let rss_end = self.proc_.status_bytes("VmRSS")?.unwrap_or(0);
        let cpu = cpu1.saturating_sub(self.cpu0).as_secs_f64();
        Ok(Usage {
            cpu_percent: if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 },
            peak_rss: self.peak_rss.max(hwm),
            rss_end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let stat = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3 0 5 6 7";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(281));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tx\nVmHWM:\t   17320 kB\nVmRSS:\t   12000 kB\n";
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(17320));
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(12000));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn parses_proc_net_tcp() {
        let line = "   1: 0100007F:4719 0100007F:BFE6 06 00000000:00000000 03:000008EE 00000000     0        0 0 3 00000000b325af49";
        let (l, r, st) = parse_tcp_line(line).expect("parses");
        if cfg!(target_endian = "little") {
            assert_eq!(l, "127.0.0.1:18201".parse().expect("addr"));
            assert_eq!(r, "127.0.0.1:49126".parse().expect("addr"));
        }
        assert!(st.closed_locally());
        assert!(!TcpState::ESTABLISHED.closed_locally());
        let mapped = "0000000000000000FFFF00000100007F:0050";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_proc_addr(mapped),
                Some("127.0.0.1:80".parse().expect("addr"))
            );
        }
        assert_eq!(parse_proc_addr("zz:1"), None);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let key = (client.local_addr().expect("addr"), addr);
        assert_eq!(
            tcp_sockets().expect("/proc/net/tcp").get(&key),
            Some(&TcpState::ESTABLISHED)
        );
    }

    #[test]
    fn measures_this_process() {
        assert!(clock_ticks_per_sec() > 0);
        let meter = Meter::start(Proc::Myself).expect("own /proc");
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let usage = meter.finish().expect("own /proc");
        assert!(usage.peak_rss > 0);
        assert!(usage.cpu_percent > 0.0);
    }
}
