//! Concurrency stress: 200 pods on one dual-stack network (bridge +
//! host-local with ipMasq, portmap chained), ADD and DEL interleaved at
//! random from 16 workers for a bounded time (`CNIBOX_STRESS_SECS`, 40 s by
//! default). During the run, every address a pod is given is checked against
//! the addresses held by every other pod, and a sampler checks twice a second
//! that the state file reads strictly, that it still holds every attached
//! pod's addresses under that pod's id, and that a pod's namespace really
//! holds what its result said. Afterwards nothing may be left: no veth, no
//! rule, no reservation. The figures are printed.

mod chaos;
#[path = "nft_support/mod.rs"]
mod support;

use chaos::*;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::common;
use support::*;

/// Figures for the test's output even when the harness captures it (the
/// harness captures the print macros, not writes to the descriptor).
macro_rules! report {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

const PODS: usize = 200;
const WORKERS: usize = 16;

#[derive(Default)]
struct Figures {
    adds: AtomicUsize,
    dels: AtomicUsize,
    calls: AtomicUsize,
    failures: AtomicUsize,
    duplicates: AtomicUsize,
    lost: AtomicUsize,
    samples: AtomicUsize,
    kernel_checks: AtomicUsize,
    errors: Mutex<Vec<String>>,
    add_ms: Mutex<Vec<u64>>,
}

impl Figures {
    fn error(&self, counter: &AtomicUsize, what: String) {
        counter.fetch_add(1, Relaxed);
        let mut e = self.errors.lock().unwrap();
        if e.len() < 20 {
            e.push(what);
        }
    }
}

#[test]
fn two_hundred_pods_sixteen_workers_no_leak_no_duplicate() {
    need_root!();
    let secs: u64 = std::env::var("CNIBOX_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let c = Cluster::new("stress", "10.76.0.0/24", "fd76::/64");
    let exe = bin();
    let path = plugin_dir_for(&c.tmp, "bin", &exe);
    let ctrs: Vec<Netns> = (0..PODS).map(|i| Netns::new(&format!("s{i}"))).collect();
    // Each pod: None when detached, its addresses when attached.
    let slots: Vec<Mutex<Option<Vec<IpAddr>>>> = (0..PODS).map(|_| Mutex::new(None)).collect();
    // Address -> the pod holding it, from the end of its ADD to the start of its DEL.
    let holders: Mutex<HashMap<IpAddr, usize>> = Mutex::new(HashMap::new());
    let f = Figures::default();
    let stop = AtomicBool::new(false);
    let id = |i: usize| format!("stress-pod-{i}");
    let port = |i: usize| 40000 + i as u16;
    let deadline = Instant::now() + Duration::from_secs(secs);

    let add = |i: usize| -> Option<Vec<IpAddr>> {
        let t = Instant::now();
        let r = c.run(&exe, &path, "bridge", "ADD", &id(i), &ctrs[i].path(), &c.bridge_conf(), &[]);
        f.calls.fetch_add(1, Relaxed);
        if r.code != 0 {
            f.error(&f.failures, format!("bridge ADD {}: {}", id(i), r.stdout.trim()));
            return None;
        }
        let res = r.json();
        let ips = result_ips(&res);
        {
            let mut h = holders.lock().unwrap();
            for ip in &ips {
                if let Some(other) = h.insert(*ip, i) {
                    f.error(&f.duplicates, format!("{ip} given to {} while {} holds it", id(i), id(other)));
                }
            }
        }
        let p =
            c.run(&exe, &path, "portmap", "ADD", &id(i), &ctrs[i].path(), &c.portmap_conf(port(i), Some(&res)), &[]);
        f.calls.fetch_add(1, Relaxed);
        if p.code != 0 {
            f.error(&f.failures, format!("portmap ADD {}: {}", id(i), p.stdout.trim()));
        }
        f.add_ms.lock().unwrap().push(t.elapsed().as_millis() as u64);
        f.adds.fetch_add(1, Relaxed);
        Some(ips)
    };
    let del = |i: usize, ips: &[IpAddr]| {
        {
            let mut h = holders.lock().unwrap();
            for ip in ips {
                if h.get(ip) == Some(&i) {
                    h.remove(ip);
                }
            }
        }
        for r in c.del_chain(&exe, &path, &id(i), &ctrs[i].path(), port(i)) {
            f.calls.fetch_add(1, Relaxed);
            if r.code != 0 {
                f.error(&f.failures, format!("DEL {}: {}", id(i), r.stdout.trim()));
            }
        }
        f.dels.fetch_add(1, Relaxed);
    };

    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (slots, add, del) = (&slots, &add, &del);
            s.spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((w as u64 + 1) * 0x1000_0000_01b3));
                while Instant::now() < deadline {
                    let i = rng.below(PODS as u64) as usize;
                    let Ok(mut slot) = slots[i].try_lock() else { continue };
                    match slot.take() {
                        None => *slot = add(i),
                        Some(ips) => del(i, &ips),
                    }
                }
            });
        }
        // The sampler: with the holders table locked (no pod can start its DEL
        // or finish its ADD meanwhile), the state file must read strictly and
        // hold every attached pod's addresses under its id.
        s.spawn(|| {
            let mut rng = Rng(7);
            while Instant::now() < deadline && !stop.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                {
                    let h = holders.lock().unwrap();
                    match read_state(&c.state_path()) {
                        Err(e) => f.error(&f.failures, format!("state file during the run: {e}")),
                        Ok(res) => {
                            for (ip, pod) in h.iter() {
                                if !res.iter().any(|r| r.ip == *ip && r.id == id(*pod)) {
                                    f.error(
                                        &f.lost,
                                        format!("{ip} of {} is not reserved for it in the state file", id(*pod)),
                                    );
                                }
                            }
                        }
                    }
                    f.samples.fetch_add(1, Relaxed);
                }
                // One attached pod's namespace holds what its result said.
                let i = rng.below(PODS as u64) as usize;
                if let Ok(slot) = slots[i].try_lock() {
                    if let Some(ips) = slot.as_ref() {
                        let have = ctrs[i].addrs("eth0");
                        for ip in ips {
                            if !have.iter().any(|a| a.split('/').next() == Some(&ip.to_string())) {
                                f.error(&f.failures, format!("{} lacks {ip} in its namespace: {have:?}", id(i)));
                            }
                        }
                        f.kernel_checks.fetch_add(1, Relaxed);
                    }
                }
            }
        });
    });
    stop.store(true, Relaxed);
    let ran = started.elapsed();

    // The runtime deletes whatever is still attached.
    let attached: Vec<usize> = (0..PODS).filter(|i| slots[*i].lock().unwrap().is_some()).collect();
    std::thread::scope(|s| {
        for chunk in attached.chunks(attached.len().div_ceil(WORKERS).max(1)) {
            let (slots, del) = (&slots, &del);
            s.spawn(move || {
                for &i in chunk {
                    let ips = slots[i].lock().unwrap().take().unwrap_or_default();
                    del(i, &ips);
                }
            });
        }
    });
    let refs: Vec<&Netns> = ctrs.iter().collect();
    let leaks = c.leaks(&refs);

    let mut ms = f.add_ms.lock().unwrap().clone();
    ms.sort_unstable();
    let pct = |p: usize| ms.get((ms.len() * p / 100).min(ms.len().saturating_sub(1))).copied().unwrap_or(0);
    let (adds, dels) = (f.adds.load(Relaxed), f.dels.load(Relaxed));
    report!(
        "stress: {WORKERS} workers, {PODS} pods, {:.1} s: operations={} ({adds} ADD, {dels} DEL; {} plugin calls, {:.0} calls/s), \
         failures={}, leaks={}, duplicate addresses={}, lost reservations={}; {} state samples, {} namespace checks; \
         chain ADD p50 {} ms, p99 {} ms",
        ran.as_secs_f64(),
        adds + dels,
        f.calls.load(Relaxed),
        f.calls.load(Relaxed) as f64 / ran.as_secs_f64(),
        f.failures.load(Relaxed),
        leaks.len(),
        f.duplicates.load(Relaxed),
        f.lost.load(Relaxed),
        f.samples.load(Relaxed),
        f.kernel_checks.load(Relaxed),
        pct(50),
        pct(99),
    );
    let errors = f.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "errors during the run: {errors:#?}");
    assert!(leaks.is_empty(), "left behind: {leaks:#?}");
    assert!(adds >= PODS / 2, "the run did some work ({adds} ADDs)");
}
