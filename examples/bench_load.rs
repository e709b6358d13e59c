//! An open-loop HTTP/1.1 load generator at a fixed offered rate, for the
//! latency columns of `examples/bench/run.sh` (wrk2 is not in Debian).
//!
//! ```text
//! bench_load URL [--method M] [--body FILE] [--rate R] [--duration SECS]
//!            [--connections C]
//! ```
//!
//! Each of C keep-alive connections sends on its own schedule, one request
//! every C/R seconds. Latency is measured from when a request was *due*, not
//! from when it could be sent: a request that waits behind a slow one counts
//! that wait (no coordinated omission, as in wrk2). When the connection was
//! idle at the due time the clock starts at the actual send instead, so the
//! timer's own slack is not charged to the server.
//!
//! Prints one JSON object: requests sent, 2xx answers, errors, achieved
//! rate, and p50/p90/p99/p99.9/max latency in microseconds.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};

struct Args {
    url: hyper::Uri,
    method: hyper::Method,
    body: Bytes,
    rate: f64,
    duration: Duration,
    connections: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut url = None;
    let mut method = hyper::Method::GET;
    let mut body = Bytes::new();
    let mut rate = 1000.0;
    let mut duration = Duration::from_secs(5);
    let mut connections = 16;
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--method" => method = val()?.parse().map_err(|_| "bad method")?,
            "--body" => {
                body = std::fs::read(val()?)
                    .map_err(|e| format!("body: {e}"))?
                    .into()
            }
            "--rate" => rate = val()?.parse().map_err(|_| "bad rate")?,
            "--duration" => {
                duration = Duration::from_secs_f64(val()?.parse().map_err(|_| "bad duration")?)
            }
            "--connections" => connections = val()?.parse().map_err(|_| "bad connections")?,
            u if url.is_none() => url = Some(u.parse().map_err(|_| "bad url")?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        url: url.ok_or("a URL is required")?,
        method,
        body,
        rate,
        duration,
        connections: connections.max(1),
    })
}

#[derive(Default)]
struct Tally {
    lat_us: Vec<u32>,
    sent: u64,
    ok: u64,
    errors: u64,
}

async fn one_connection(
    args: &Args,
    first_due: Instant,
    interval: Duration,
    end: Instant,
) -> Tally {
    let mut t = Tally::default();
    let authority = args.url.authority().map(|a| a.as_str()).unwrap_or("");
    let connect = || async {
        let stream = tokio::net::TcpStream::connect(authority).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(conn);
        Some(send)
    };
    let mut sender = connect().await;
    let mut due = first_due;
    let mut idle_since = Instant::now();
    while due < end {
        tokio::time::sleep_until(due.into()).await;
        let sent_at = Instant::now();
        // idle at the due time: the timer's slack is not the server's
        let start = if idle_since <= due { sent_at } else { due };
        t.sent += 1;
        let Some(s) = sender.as_mut() else {
            t.errors += 1;
            sender = connect().await;
            due += interval;
            idle_since = Instant::now();
            continue;
        };
        let req = hyper::Request::builder()
            .method(args.method.clone())
            .uri(args.url.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(args.body.clone()));
        let ok = match req {
            Ok(req) => match s.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    resp.into_body().collect().await.is_ok() && status.is_success()
                }
                Err(_) => false,
            },
            Err(_) => false,
        };
        let done = Instant::now();
        if ok {
            t.ok += 1;
            t.lat_us
                .push(u32::try_from(done.duration_since(start).as_micros()).unwrap_or(u32::MAX));
        } else {
            t.errors += 1;
            sender = connect().await;
        }
        idle_since = Instant::now();
        due += interval;
    }
    t
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_load: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_load: runtime: {e}");
            std::process::exit(1);
        }
    };
    let args = std::sync::Arc::new(args);
    let tallies = rt.block_on(async {
        let c = args.connections;
        let interval = Duration::from_secs_f64(c as f64 / args.rate);
        let begin = Instant::now() + Duration::from_millis(200);
        let end = begin + args.duration;
        let mut tasks = Vec::new();
        for i in 0..c {
            let a = args.clone();
            // spread the connections' schedules evenly over one interval
            let first = begin + interval.mul_f64(i as f64 / c as f64);
            tasks.push(tokio::spawn(async move {
                one_connection(&a, first, interval, end).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            if let Ok(t) = t.await {
                out.push(t);
            }
        }
        out
    });
    let mut all = Tally::default();
    for t in tallies {
        all.sent += t.sent;
        all.ok += t.ok;
        all.errors += t.errors;
        all.lat_us.extend(t.lat_us);
    }
    all.lat_us.sort_unstable();
    let l = &all.lat_us;
    println!(
        "{{\"offered_rps\":{:.0},\"sent\":{},\"ok\":{},\"errors\":{},\"achieved_rps\":{:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        args.rate,
        all.sent,
        all.ok,
        all.errors,
        all.ok as f64 / args.duration.as_secs_f64(),
        pct(l, 50.0),
        pct(l, 90.0),
        pct(l, 99.0),
        pct(l, 99.9),
        l.last().copied().unwrap_or(0)
    );
}
