//! The process's CPU, memory, threads and file descriptors, under the names
//! of Prometheus' process collector (`process_cpu_seconds_total`, ...), so
//! that the dashboards and alerts written for any other server work as they
//! are.
//!
//! Read from `/proc/self` at each scrape. The `prometheus` crate's own
//! collector (feature `process`) would bring `procfs` and with it a second
//! `rustix` major; these are a few lines of parsing instead. On a system
//! without `/proc` the values stay at zero.

use prometheus::{Counter, Gauge, IntGauge, Registry};

/// The process collector's metrics, unprefixed.
pub struct Process {
    cpu_seconds: Counter,
    resident_bytes: IntGauge,
    virtual_bytes: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
}

impl Process {
    pub fn new(registry: &Registry) -> Self {
        let process = Self {
            cpu_seconds: Counter::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds",
            )
            .expect("valid metric"),
            resident_bytes: IntGauge::new(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            )
            .expect("valid metric"),
            virtual_bytes: IntGauge::new(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
            )
            .expect("valid metric"),
            open_fds: IntGauge::new("process_open_fds", "Number of open file descriptors")
                .expect("valid metric"),
            max_fds: IntGauge::new("process_max_fds", "Maximum number of open file descriptors")
                .expect("valid metric"),
            threads: IntGauge::new("process_threads", "Number of OS threads in the process")
                .expect("valid metric"),
            start_time: Gauge::new(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
            )
            .expect("valid metric"),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 7] = [
            Box::new(process.cpu_seconds.clone()),
            Box::new(process.resident_bytes.clone()),
            Box::new(process.virtual_bytes.clone()),
            Box::new(process.open_fds.clone()),
            Box::new(process.max_fds.clone()),
            Box::new(process.threads.clone()),
            Box::new(process.start_time.clone()),
        ];
        for c in collectors {
            registry
                .register(c)
                .expect("each process metric is registered once");
        }
        process
    }

    /// Reads `/proc/self` into the metrics; what cannot be read keeps its
    /// last value.
    pub fn update(&self) {
        if let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| Stat::parse(&s))
        {
            let cpu = stat.cpu_seconds();
            // A counter only goes up: add what was used since the last scrape.
            let seen = self.cpu_seconds.get();
            if cpu > seen {
                self.cpu_seconds.inc_by(cpu - seen);
            }
            self.resident_bytes
                .set(stat.rss_pages.saturating_mul(page_size()) as i64);
            self.virtual_bytes.set(stat.vsize as i64);
            self.threads.set(stat.threads as i64);
            if let Some(boot) = boot_time() {
                self.start_time
                    .set(boot as f64 + stat.start_ticks as f64 / clock_ticks());
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        if let Some(max) = max_fds() {
            self.max_fds.set(max);
        }
    }
}

/// The fields of `/proc/self/stat` the metrics need (proc(5)).
#[derive(Debug, PartialEq)]
struct Stat {
    user_ticks: u64,
    system_ticks: u64,
    threads: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

impl Stat {
    /// Parses the line; the command name, in parentheses, may hold spaces and
    /// parentheses itself, so the fields are counted from the last `)`.
    fn parse(line: &str) -> Option<Self> {
        let rest = &line[line.rfind(')')? + 1..];
        // Field 3 (state) is index 0 here.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            user_ticks: field(14)?,
            system_ticks: field(15)?,
            threads: field(20)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }

    fn cpu_seconds(&self) -> f64 {
        (self.user_ticks + self.system_ticks) as f64 / clock_ticks()
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: as above.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

/// The system's boot time in seconds since the epoch (`btime` of `/proc/stat`).
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit on open files.
fn max_fds() -> Option<i64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives here.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then(|| i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as proc(5) allows.
        let line = "4242 (in flow) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    150 50 0 0 20 0 9 0 12345 987654321 2500 18446744073709551615";
        let stat = Stat::parse(line).unwrap();
        assert_eq!(
            stat,
            Stat {
                user_ticks: 150,
                system_ticks: 50,
                threads: 9,
                start_ticks: 12345,
                vsize: 987654321,
                rss_pages: 2500,
            }
        );
        assert_eq!(Stat::parse("4242 (inflow) S 1 2"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let registry = Registry::new();
        let process = Process::new(&registry);
        process.update();
        assert!(process.resident_bytes.get() > 1 << 20);
        assert!(process.open_fds.get() >= 3);
        assert!(process.max_fds.get() >= process.open_fds.get());
        assert!(process.threads.get() >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = process.start_time.get();
        assert!(
            started > now - 3600.0 && started <= now + 1.0,
            "{started} vs {now}"
        );
    }
}
