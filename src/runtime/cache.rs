//! The result cache in libcni's own place and format, so that cnibox,
//! cnitool, containerd and podman read each other's attachments:
//! `<dir>/results/<network>-<containerid>-<ifname>`, JSON of kind `cniCacheV1`
//! holding the config list (base64, as Go encodes `[]byte`), the runtime
//! parameters and the final ADD result.

use crate::cni::json::{json_struct, Bad, FromJson, JResult};
use crate::cni::json_writer::JsonWriter;
use crate::error::{Error, Result};
use crate::json::{self, Map, Value};
use crate::sys::file;
use std::path::PathBuf;

pub const KIND: &str = "cniCacheV1";
pub const DEFAULT_DIR: &str = "/var/lib/cni";

json_struct! {
    /// Field order and names as libcni's `cachedInfo` marshals them.
    #[derive(Default)]
    pub struct Entry {
        pub kind: String = get("kind"),
        pub container_id: String = get("containerId"),
        pub config: Vec<u8> = get_with("config", base64_bytes),
        pub ifname: String = get("ifName"),
        pub network: String = get("networkName"),
        pub netns: String = get("netns"),
        pub cni_args: Vec<(String, String)> = get("cniArgs"),
        pub cap_args: Map = get("capabilityArgs"),
        pub result: Option<Value> = opt("result"),
    }
}

impl Entry {
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        w.begin_object().key("kind").string(&self.kind).key("containerId").string(&self.container_id);
        w.key("config").string(&base64::encode(&self.config)).key("ifName").string(&self.ifname);
        w.key("networkName").string(&self.network).nonempty("netns", &self.netns);
        if !self.cni_args.is_empty() {
            w.key("cniArgs").begin_array();
            for (k, v) in &self.cni_args {
                w.begin_array().string(k).string(v).end_array();
            }
            w.end_array();
        }
        if !self.cap_args.is_empty() {
            w.key("capabilityArgs").raw(&self.cap_args.to_json());
        }
        if let Some(r) = &self.result {
            w.key("result").raw(&r.to_json());
        }
        w.end_object();
        w.finish()
    }
}

/// Go's `[]byte`, base64 in a JSON string.
fn base64_bytes(v: &Value) -> JResult<Vec<u8>> {
    base64::decode(&String::from_json(v)?).ok_or_else(|| Bad::new("config is not valid base64"))
}

pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    pub fn new(dir: &str) -> Cache {
        Cache { dir: PathBuf::from(dir) }
    }

    fn results(&self) -> PathBuf {
        self.dir.join("results")
    }

    pub fn path(&self, network: &str, id: &str, ifname: &str) -> PathBuf {
        self.results().join(format!("{network}-{id}-{ifname}"))
    }

    /// The entry for one attachment: None when there is no file. A file
    /// written before libcni had cache kinds holds the bare result.
    pub fn read(&self, network: &str, id: &str, ifname: &str) -> Result<Option<Entry>> {
        let p = self.path(network, id, ifname);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::os(format_args!("read cache file {}", p.display()), e.raw_os_error().unwrap_or(0)))
            }
        };
        let bad = |e: String| Error::msg(format!("cache file {} is not valid: {e}", p.display()));
        let v = json::parse(&bytes).map_err(|e| bad(e.to_string()))?;
        let entry = Entry::from_json(&v).map_err(|b| bad(b.located()))?;
        if entry.kind == KIND {
            return Ok(Some(entry));
        }
        Ok(Some(Entry {
            network: network.into(),
            container_id: id.into(),
            ifname: ifname.into(),
            result: Some(v),
            ..Entry::default()
        }))
    }

    pub fn write(&self, e: &Entry) -> Result<()> {
        file::create_dir_all(&self.results(), 0o700)?;
        file::write_atomic(&self.path(&e.network, &e.container_id, &e.ifname), e.to_json().as_bytes(), 0o600)
    }

    pub fn remove(&self, network: &str, id: &str, ifname: &str) -> Result<()> {
        let p = self.path(network, id, ifname);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::os(format_args!("remove cache file {}", p.display()), e.raw_os_error().unwrap_or(0)))
            }
            _ => Ok(()),
        }
    }

    /// Every readable `cniCacheV1` attachment, in file-name order; other
    /// files are skipped, as libcni's `GetCachedAttachments` does.
    pub fn list(&self) -> Vec<Entry> {
        let dir = self.results();
        super::dir_names(&dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| Entry::from_json(&json::parse(&std::fs::read(dir.join(n)).ok()?).ok()?).ok())
            .filter(|e| e.kind == KIND && !e.ifname.is_empty() && !e.network.is_empty())
            .collect()
    }

    /// Serialises the runtime's read-check-write of the cache (no second ADD
    /// slipping in between the check and the write; GC exclusive).
    pub fn lock(&self) -> Result<file::FileLock> {
        file::create_dir_all(&self.dir, 0o700)?;
        file::FileLock::exclusive(&self.dir.join("cnibox.lock"))
    }
}

/// Go's encoding of `[]byte`: standard base64 with padding; `null` for nil.
mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for c in data.chunks(3) {
            let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let s = s.trim_end_matches('=');
        let mut out = Vec::with_capacity(s.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0);
        for b in s.bytes() {
            let v = ALPHABET.iter().position(|&a| a == b)? as u32;
            acc = acc << 6 | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;

    fn parse(s: &str) -> Value {
        json::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn base64_round_trip() {
        for (plain, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")] {
            assert_eq!(base64::encode(plain.as_bytes()), enc);
            assert_eq!(base64::decode(enc).unwrap(), plain.as_bytes());
        }
        assert!(base64::decode("Zm9v!").is_none());
    }

    #[test]
    fn entry_matches_libcni_field_names() {
        let e = Entry {
            kind: KIND.into(),
            container_id: "c1".into(),
            config: b"{}".to_vec(),
            ifname: "eth0".into(),
            network: "n".into(),
            cni_args: vec![("K".into(), "V".into())],
            ..Entry::default()
        };
        let s = e.to_json();
        assert_eq!(
            s,
            r#"{"kind":"cniCacheV1","containerId":"c1","config":"e30=","ifName":"eth0","networkName":"n","cniArgs":[["K","V"]]}"#
        );
        let back = Entry::from_json(&parse(r#"{"kind":"cniCacheV1","config":null,"ifName":"eth0"}"#)).ok().unwrap();
        assert!(back.config.is_empty());
        let back = Entry::from_json(&parse(&s)).ok().unwrap();
        assert_eq!((back.config, back.cni_args), (b"{}".to_vec(), vec![("K".to_string(), "V".to_string())]));
        let caps = json!({"portMappings": [{"hostPort": 8080, "protocol": "tcp"}], "mac": "0a:58:00:00:00:01"});
        let result = json!({"cniVersion": "1.1.0", "ips": [{"address": "10.1.0.2/24"}]});
        let e = Entry { cap_args: caps.as_object().unwrap().clone(), result: Some(result.clone()), ..e };
        let s = e.to_json();
        // Keys in order, as libcni (Go's encoding/json) writes a map.
        assert!(
            s.ends_with(r#""capabilityArgs":{"mac":"0a:58:00:00:00:01","portMappings":[{"hostPort":8080,"protocol":"tcp"}]},"result":{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.2/24"}]}}"#),
            "{s}"
        );
        let back = Entry::from_json(&parse(&s)).ok().unwrap();
        assert_eq!((Value::Object(back.cap_args), back.result), (caps, Some(result)));
    }
}
