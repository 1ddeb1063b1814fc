//! The plugin ↔ daemon protocol (described in the module docs of `dhcp`):
//! one JSON request line, one JSON reply line, on a fresh unix-socket
//! connection. Both sides use these types, so they cannot drift apart.

use crate::cni::json::{json_struct, object, FromJson, JResult};
use crate::cni::json_writer::JsonWriter;
use crate::cni::result::AnyResult;
use crate::cni::{version, CniResult};
use crate::error::{code, Error, Result};
use crate::json::Value;
use std::io::{Read, Write};
use std::time::Duration;

pub const DEFAULT_SOCKET: &str = "/run/cni/dhcp.sock";
/// Longest wait for a daemon to take a connection (it accepts within
/// milliseconds unless it is stopped or stuck).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request or reply line read.
pub const MAX_LINE: usize = 64 * 1024;

json_struct! {
    #[derive(Default)]
    pub struct Request {
        /// `add`, `check`, `del`, `gc` or `status`.
        pub op: String = req("op"),
        /// The lease's name and DHCP client identifier: `<containerID>/<network>/<ifname>`.
        pub id: String = get("id"),
        pub network: String = get("network"),
        /// Absolute path of the container's network namespace (add).
        pub netns: String = get("netns"),
        pub ifname: String = get("ifname"),
        /// Option codes for the parameter request list (add).
        pub request: Vec<u8> = get("request"),
        /// Options sent to the server as given: `[code, "value"]` (add).
        pub provide: Vec<(u8, String)> = get("provide"),
        /// The ids of `network` that stay (gc).
        pub keep: Vec<String> = get("keep"),
    }
}

impl Request {
    /// The request as its object; empty fields are left out.
    pub fn write_json(&self, w: &mut JsonWriter) {
        w.begin_object().key("op").string(&self.op).nonempty("id", &self.id).nonempty("network", &self.network);
        w.nonempty("netns", &self.netns).nonempty("ifname", &self.ifname);
        if !self.request.is_empty() {
            w.key("request").begin_array();
            for &code in &self.request {
                w.number(code.into());
            }
            w.end_array();
        }
        if !self.provide.is_empty() {
            w.key("provide").begin_array();
            for (code, value) in &self.provide {
                w.begin_array().number((*code).into()).string(value).end_array();
            }
            w.end_array();
        }
        w.strings("keep", &self.keep).end_object();
    }

    /// The request as the line sent to the daemon.
    pub fn to_line(&self) -> Vec<u8> {
        let mut w = JsonWriter::new();
        self.write_json(&mut w);
        let mut line = w.finish().into_bytes();
        line.push(b'\n');
        line
    }
}

/// Success: `{}` or `{"result": {...}}`; failure: the CNI error fields.
/// The daemon writes a `CniResult`; the plugin reads it back through the
/// one parser of results (any version), so `R` differs between the two sides.
pub struct Reply<R = CniResult> {
    pub code: u32,
    pub msg: String,
    pub details: String,
    pub result: Option<R>,
}

impl<R: FromJson> FromJson for Reply<R> {
    fn from_json(v: &Value) -> JResult<Reply<R>> {
        object(v, |o| {
            Ok(Reply { code: o.get("code")?, msg: o.get("msg")?, details: o.get("details")?, result: o.opt("result")? })
        })
    }
}

impl<R> Reply<R> {
    pub fn error(e: &Error) -> Reply<R> {
        Reply { code: e.code, msg: e.msg.clone(), details: e.details.clone(), result: None }
    }

    pub fn ok(result: Option<R>) -> Reply<R> {
        Reply { code: 0, msg: String::new(), details: String::new(), result }
    }
}

impl Reply {
    /// The reply as one line, the result printed as the newest version.
    pub fn to_line(&self) -> Vec<u8> {
        let mut w = JsonWriter::new();
        w.begin_object();
        if self.code != 0 {
            w.key("code").number(self.code.into()).key("msg").string(&self.msg).nonempty("details", &self.details);
        }
        if let Some(r) = &self.result {
            match r.to_json(version::CURRENT) {
                Ok(json) => w.key("result").raw(&json),
                Err(e) => return Reply::<CniResult>::error(&e).to_line(),
            };
        }
        w.end_object();
        let mut line = w.finish().into_bytes();
        line.push(b'\n');
        line
    }
}

impl Reply<AnyResult> {
    fn into_result(self) -> Result<Option<CniResult>> {
        if self.code != 0 {
            return Err(Error::new(self.code, self.msg).with_details(self.details));
        }
        Ok(self.result.map(AnyResult::normalize))
    }
}

/// Send `req` to the daemon at `path` and wait up to `timeout` for its reply.
/// A daemon that is not there, or does not answer in time, is "try again later" (11).
pub fn call(path: &str, req: &Request, timeout: Duration) -> Result<Option<CniResult>> {
    let later = |what: &str, e: std::io::Error| {
        let why = match e.raw_os_error() {
            Some(n) => crate::error::strerror(n),
            None => e.to_string(),
        };
        Error::new(code::TRY_AGAIN_LATER, format!("{what} {path}: {why}"))
    };
    let mut s =
        crate::sys::unix_path::connect(std::path::Path::new(path), timeout.min(CONNECT_TIMEOUT)).map_err(|e| {
            if e.errno == libc::EAGAIN {
                return Error::new(
                    code::TRY_AGAIN_LATER,
                    format!(
                        "DHCP daemon at {path} is not accepting connections (its backlog stayed full for {}s)",
                        timeout.min(CONNECT_TIMEOUT).as_secs()
                    ),
                );
            }
            later("DHCP daemon is not running: cannot connect to", std::io::Error::from_raw_os_error(e.errno))
                .with_details("start it with `cnibox dhcp daemon`")
        })?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    s.write_all(&req.to_line()).map_err(|e| later("cannot send to the DHCP daemon at", e))?;
    // The daemon closes the connection after its one line.
    let mut buf = Vec::new();
    let read = (&s).take(MAX_LINE as u64).read_to_end(&mut buf);
    match read {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            return Err(Error::new(
                code::TRY_AGAIN_LATER,
                format!("DHCP daemon at {path} did not answer within {}s", timeout.as_secs()),
            ));
        }
        Err(e) => return Err(later("cannot read the DHCP daemon's answer from", e)),
        Ok(_) if !buf.ends_with(b"\n") => {
            return Err(Error::new(
                code::TRY_AGAIN_LATER,
                format!("DHCP daemon at {path} closed the connection without an answer"),
            ));
        }
        Ok(_) => {}
    }
    let reply: Reply<AnyResult> = crate::cni::config::parse(&buf, "DHCP daemon answer")?;
    reply.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        let r = Request {
            op: "add".into(),
            id: "c1/net/eth0".into(),
            request: vec![1, 3],
            provide: vec![(12, "pod-a".into())],
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(r.to_line()).unwrap(),
            "{\"op\":\"add\",\"id\":\"c1/net/eth0\",\"request\":[1,3],\"provide\":[[12,\"pod-a\"]]}\n"
        );
        let back: Request = crate::cni::config::parse(&r.to_line(), "request").unwrap();
        assert_eq!((back.id, back.request, back.provide), (r.id, r.request, r.provide));
        let e: Reply = Reply::error(&Error::new(11, "later"));
        assert_eq!(e.to_line(), b"{\"code\":11,\"msg\":\"later\"}\n");
        assert_eq!(Reply::<CniResult>::ok(None).to_line(), b"{}\n");
        let back: Reply<AnyResult> = crate::cni::config::parse(br#"{"code":11,"msg":"later"}"#, "reply").unwrap();
        assert_eq!(back.into_result().err().unwrap().code, 11);
    }

    #[test]
    fn missing_daemon_is_try_again_later() {
        let e = call("/nonexistent/cnibox-dhcp.sock", &Request::default(), Duration::from_secs(1)).err().unwrap();
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        assert!(
            e.msg.starts_with("DHCP daemon is not running: cannot connect to /nonexistent/cnibox-dhcp.sock: "),
            "{}",
            e.msg
        );
    }

    #[test]
    fn silent_daemon_times_out() {
        let dir = std::env::temp_dir().join(format!("cnibox-rpc-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let p = path.to_string_lossy().into_owned();
        let e = call(&p, &Request::default(), Duration::from_millis(200)).err().unwrap();
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        assert!(e.msg.contains("did not answer"), "{}", e.msg);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
