//! The daemon's command line, in the reference's Go `flag` syntax.

use super::super::client::Ms;
use super::super::rpc;

pub const USAGE: &str = "usage: dhcp daemon [-socketpath PATH] [-pidfile PATH] [-hostprefix PREFIX] [-broadcast] [-timeout DURATION] [-resendmax DURATION]\n\
\x20 -socketpath   unix socket the plugin talks to (default /run/cni/dhcp.sock); leases are kept in PATH.leases\n\
\x20 -pidfile      write the daemon's pid here\n\
\x20 -hostprefix   prefix of the host's root for the socket and namespace paths\n\
\x20 -broadcast    ask servers to broadcast their answers\n\
\x20 -timeout      how long ADD waits for a lease (default 10s)\n\
\x20 -resendmax    longest delay between two retransmissions (default 62s)\n";

pub struct Opts {
    pub socket: String,
    pub pidfile: String,
    pub hostprefix: String,
    pub broadcast: bool,
    pub timeout: Ms,
    pub resend_max: Ms,
}

/// Go `flag` syntax, as the reference daemon takes it: `-name value`,
/// `-name=value`, `--name`; `-broadcast` alone is true. Err("") asks for help.
pub fn parse_args(args: &[String]) -> std::result::Result<Opts, String> {
    let mut o = Opts {
        socket: rpc::DEFAULT_SOCKET.into(),
        pidfile: String::new(),
        hostprefix: String::new(),
        broadcast: false,
        timeout: 10_000,
        resend_max: 62_000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let flag = a
            .strip_prefix("--")
            .or_else(|| a.strip_prefix('-'))
            .ok_or_else(|| format!("unexpected argument \"{a}\""))?;
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        match name {
            "h" | "help" => return Err(String::new()),
            "broadcast" => {
                o.broadcast = match inline.as_deref() {
                    None | Some("true" | "1") => true,
                    Some("false" | "0") => false,
                    Some(v) => return Err(format!("invalid boolean value \"{v}\" for -broadcast")),
                };
                continue;
            }
            "socketpath" | "pidfile" | "hostprefix" | "timeout" | "resendmax" => {}
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
        let v = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| format!("flag needs an argument: -{name}"))?,
        };
        match name {
            "socketpath" => o.socket = v,
            "pidfile" => o.pidfile = v,
            "hostprefix" => o.hostprefix = v,
            "timeout" => o.timeout = duration(&v)?,
            _ => o.resend_max = duration(&v)?,
        }
    }
    if o.socket.is_empty() {
        o.socket = rpc::DEFAULT_SOCKET.into();
    }
    Ok(o)
}

/// A Go duration ("10s", "1m30s", "1.5s", "250ms") in milliseconds.
pub fn duration(s: &str) -> std::result::Result<Ms, String> {
    let bad = || format!("invalid duration \"{s}\"");
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut us: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?;
        let (int, frac) = rest[..n].split_once('.').unwrap_or((&rest[..n], ""));
        if int.is_empty() && frac.is_empty() || int.len() > 12 || frac.len() > 6 {
            return Err(bad());
        }
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        // microseconds per unit (a nanosecond part is dropped)
        let unit: u64 = match &rest[..u] {
            "ns" => 0,
            "us" | "µs" => 1,
            "ms" => 1_000,
            "s" => 1_000_000,
            "m" => 60_000_000,
            "h" => 3_600_000_000,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        let num = |t: &str| if t.is_empty() { Ok(0) } else { t.parse::<u64>().map_err(|_| bad()) };
        let part = num(int)?.saturating_mul(unit).saturating_add(num(frac)? * unit / 10u64.pow(frac.len() as u32));
        us = us.saturating_add(part);
    }
    Ok(us / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn go_style_flags() {
        let o = parse_args(&args("-socketpath /tmp/x.sock --pidfile=/tmp/p -broadcast -timeout 3s -resendmax=1m30s"))
            .unwrap();
        assert_eq!(
            (o.socket.as_str(), o.pidfile.as_str(), o.broadcast, o.timeout, o.resend_max),
            ("/tmp/x.sock", "/tmp/p", true, 3000, 90_000)
        );
        let o = parse_args(&[]).unwrap();
        assert_eq!(
            (o.socket.as_str(), o.timeout, o.resend_max, o.broadcast),
            ("/run/cni/dhcp.sock", 10_000, 62_000, false)
        );
        assert!(!parse_args(&args("-broadcast=false")).unwrap().broadcast);
        assert_eq!(parse_args(&args("-nope 1")).err().unwrap(), "flag provided but not defined: -nope");
        assert_eq!(parse_args(&args("-nope")).err().unwrap(), "flag provided but not defined: -nope");
        assert_eq!(parse_args(&args("-timeout")).err().unwrap(), "flag needs an argument: -timeout");
        assert_eq!(parse_args(&args("stray")).err().unwrap(), "unexpected argument \"stray\"");
        assert_eq!(parse_args(&args("-h")).err().unwrap(), "");
    }

    #[test]
    fn go_durations() {
        assert_eq!(duration("10s"), Ok(10_000));
        assert_eq!(duration("1.5s"), Ok(1500));
        assert_eq!(duration("250ms"), Ok(250));
        assert_eq!(duration("1h2m3s"), Ok(3_723_000));
        assert_eq!(duration("0"), Ok(0));
        assert_eq!(duration(".5m"), Ok(30_000));
        for bad in ["", "10", "s", "1x", "1.2.3s", "-1s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
