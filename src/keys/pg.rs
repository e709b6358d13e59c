//! The PostgreSQL backend of [`KeyStore`](super::KeyStore): what lets
//! several sealgate nodes share one key store.
//!
//! Every node keeps the whole store in memory (the same
//! [`State`](super::model::State) the
//! embedded backend reads), so a warm request makes no database round trip.
//! PostgreSQL holds the records — material sealed under the root key, never
//! in clear — each row stamped with a `revision` from one sequence:
//!
//! - a **write** runs in one transaction that takes a store-wide
//!   transaction-scoped advisory lock, pulls the rows changed since this
//!   node's last revision, lets the caller re-plan against that fresh state,
//!   writes the planned rows with new revisions, `NOTIFY`s and commits. The
//!   lock makes writes (and so revisions) commit in order across the fleet:
//!   two nodes creating one alias end with one key and an "alias exists"
//!   error, two rotations with two versions;
//! - a **listener** connection `LISTEN`s and pulls what changed since the
//!   last revision into memory (bumping the epoch, so cached data keys drop),
//!   and polls every [`POLL_INTERVAL`] in case a notification is lost;
//! - a miss (a key or version this node has not seen) pulls once before it
//!   answers "not found", coalesced across concurrent misses.
//!
//! The client is the synchronous `postgres` crate, run on threads of its own
//! (one for requests, one for the listener): the store's API is synchronous
//! and is called from inside the tokio runtime, where that crate's internal
//! `block_on` must not run. Callers talk to the request thread over a
//! channel. Deleted keys stay as tombstone rows (no record, no material) so
//! other nodes learn of the deletion.
//!
//! **Failing fast.** A caller waits at most [`UNREACHABLE_TIMEOUT`] for the
//! database to show it is there (a connection made and a first statement
//! answered) and at most [`OP_TIMEOUT`] in all: a reachable database that is
//! slow — a write waiting for the store lock — is waited for, a dead one is
//! not. Connecting gives up after [`CONNECT_TIMEOUT`] and unacknowledged
//! data after [`UNREACHABLE_TIMEOUT`] (`tcp_user_timeout`). Once a connect
//! has failed the database is known to be unreachable: every operation then
//! fails at once, without queueing, until the listener (which retries every
//! [`POLL_INTERVAL`]) or a request connects again.
//!
//! The schema is versioned (`sealgate_schema_version`) and migrated under an
//! advisory lock by whichever node or command connects first. Not PURE:
//! network I/O.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls, Transaction};

use super::model::{CredentialRecord, KeyId, KeyRecord, Mutation};
use super::store::Synced;

/// How often the listener pulls even without a notification: the bound on
/// propagation when a notification is lost.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Longest a caller waits for a database that has shown it is there (a
/// write waiting for the store-wide lock, a slow statement) before the
/// operation fails.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a caller waits for the database to show it is there — connected
/// and answering the operation's first statement — before the operation
/// fails as unreachable; also the TCP user timeout of every connection (data
/// the server does not acknowledge in that time breaks the connection).
/// With PostgreSQL down, killed or cut off, a write or a cold miss fails
/// within this bound (at once when a connect has already failed).
pub const UNREACHABLE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Connect timeout when the URL sets none (a larger one in the URL is
/// still cut short by [`UNREACHABLE_TIMEOUT`] for the caller).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a waiting caller looks whether the database was found
/// unreachable meanwhile.
const WAIT_SLICE: Duration = Duration::from_millis(20);
/// A database that answered a statement within this window (the listener
/// pulls every [`POLL_INTERVAL`]) is there, only slow: a caller queued
/// behind a write that waits for the store lock waits on.
const LIVE_WINDOW: Duration = Duration::from_secs(1);
/// The `NOTIFY` channel.
const CHANNEL: &str = "sealgate";
/// First half of every advisory lock key ("sg" in ASCII); the second half
/// is `hashtext(current_schema())`, so stores in different schemas of one
/// database do not wait for each other.
const LOCK_CLASS: i32 = 0x7367;

/// The schema, one migration per version, applied in order.
const MIGRATIONS: &[&str] = &[
    // 1: metadata (key-check value), keys, credentials, the revision sequence.
    "CREATE SEQUENCE sealgate_revision;
     CREATE TABLE sealgate_meta (
         name  text PRIMARY KEY,
         value bytea NOT NULL
     );
     CREATE TABLE sealgate_keys (
         key_id   text PRIMARY KEY,
         revision bigint NOT NULL,
         alias    text UNIQUE,
         record   jsonb,
         changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
     );
     CREATE INDEX sealgate_keys_revision ON sealgate_keys (revision);
     CREATE TABLE sealgate_credentials (
         id       text PRIMARY KEY,
         revision bigint NOT NULL,
         record   jsonb NOT NULL,
         changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
     );
     CREATE INDEX sealgate_credentials_revision ON sealgate_credentials (revision);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Rows changed since a revision, with how long ago each changed by the
/// database's own clock (so the lag needs no clock agreement between nodes).
const PULL: &str = "SELECT true, key_id, revision, record,
            extract(epoch FROM clock_timestamp() - changed_at)::float8
     FROM sealgate_keys WHERE revision > $1
     UNION ALL
     SELECT false, id, revision, record,
            extract(epoch FROM clock_timestamp() - changed_at)::float8
     FROM sealgate_credentials WHERE revision > $1
     ORDER BY 3";

/// One changed row as pulled.
#[derive(Debug)]
pub(crate) struct Row {
    /// A key row (else a credential row).
    is_key: bool,
    /// KeyId or credential id.
    id: String,
    /// Its revision.
    pub(crate) revision: i64,
    /// The record; `None` for a deleted key.
    record: Option<serde_json::Value>,
    /// Seconds since it changed, at the pull (database clock).
    age: f64,
}

impl Row {
    /// The write this row stands for.
    pub(crate) fn mutation(self) -> Result<Mutation, String> {
        if !self.is_key {
            let rec = self
                .record
                .ok_or_else(|| format!("credential {} has no record", self.id))?;
            let c: CredentialRecord = serde_json::from_value(rec)
                .map_err(|e| format!("unreadable credential record {}: {e}", self.id))?;
            return Ok(Mutation::PutCredential(c));
        }
        let id = KeyId::parse(&self.id).ok_or_else(|| format!("bad key id {:?}", self.id))?;
        match self.record {
            None => Ok(Mutation::DeleteKey(id)),
            Some(v) => {
                let rec: KeyRecord = serde_json::from_value(v)
                    .map_err(|e| format!("unreadable key record {id}: {e}"))?;
                super::model::check_record(&rec)?;
                if rec.metadata.key_id != id {
                    return Err(format!("key row {id} holds key {}", rec.metadata.key_id));
                }
                Ok(Mutation::PutKey(Box::new(rec)))
            }
        }
    }
}

/// Rows changed since a revision, oldest first.
pub(crate) type Pulled = Vec<Row>;

/// What went wrong talking to PostgreSQL (messages never hold key bytes:
/// records travel as statement parameters, never in SQL text).
#[derive(Debug, Clone)]
pub(crate) struct PgError(pub(crate) String, Fault);

/// The kind of a [`PgError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The database answered with an error (or something else failed).
    Other,
    /// The connection is gone (the server closed it or is shutting down):
    /// the next attempt needs a new one.
    Lost,
    /// The database cannot be reached: a connect failed, or it did not
    /// show it is there within [`UNREACHABLE_TIMEOUT`].
    Unreachable,
}

impl PgError {
    fn new(message: impl Into<String>) -> Self {
        PgError(message.into(), Fault::Other)
    }

    fn unreachable(message: impl Into<String>) -> Self {
        PgError(message.into(), Fault::Unreachable)
    }

    /// Whether the connection is gone: the next attempt needs a new one.
    fn connection_lost(&self) -> bool {
        matches!(self.1, Fault::Lost | Fault::Unreachable)
    }

    /// Whether the database could not be reached (rather than answering
    /// with an error): the key store is unavailable, not failing.
    pub(crate) fn is_unreachable(&self) -> bool {
        self.1 == Fault::Unreachable
    }
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        // closed, a connection exception (class 08) or the server ending
        // the session (57P01-57P03)
        let lost = e.is_closed()
            || e.code().is_some_and(|c| {
                let c = c.code();
                c.starts_with("08") || c.starts_with("57P0")
            });
        let message = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            // the cause (connection refused, timed out) is in the source
            None => match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            },
        };
        PgError(message, if lost { Fault::Lost } else { Fault::Other })
    }
}

/// What this node knows of the database's health: whether it is known to
/// be unreachable (set when a connect fails or a caller got no answer in
/// [`UNREACHABLE_TIMEOUT`] while nothing else answered either; cleared by
/// the next answer on any connection) and when it last answered a
/// statement (the listener pulls at least every [`POLL_INTERVAL`], so a
/// live database answers often).
#[derive(Debug)]
struct Health {
    url: StoreUrl,
    down: AtomicBool,
    /// Why, for the error callers get meanwhile.
    why: Mutex<String>,
    /// The clock `last_answer` counts from.
    origin: Instant,
    /// Microseconds from `origin` to the last answer (0: none yet).
    last_answer: AtomicU64,
}

impl Health {
    fn new(url: StoreUrl) -> Self {
        Health {
            url,
            down: AtomicBool::new(false),
            why: Mutex::new(String::new()),
            origin: Instant::now(),
            last_answer: AtomicU64::new(0),
        }
    }

    fn set_down(&self, why: &str) {
        *self.why.lock().unwrap_or_else(PoisonError::into_inner) = why.to_string();
        if !self.down.swap(true, Ordering::SeqCst) {
            tracing::warn!(store = %self.url, error = %why,
                "key store database unreachable; writes and cold misses fail until it answers again");
        }
    }

    /// The database answered (a connect, a statement) just now.
    fn answered(&self) {
        let us = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_answer.fetch_max(us.max(1), Ordering::SeqCst);
        if self.down.swap(false, Ordering::SeqCst) {
            tracing::info!(store = %self.url, "key store database reachable again");
        }
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Whether the database answered something within [`LIVE_WINDOW`].
    fn answered_lately(&self) -> bool {
        let us = self.last_answer.load(Ordering::SeqCst);
        us > 0 && self.origin + Duration::from_micros(us) + LIVE_WINDOW > Instant::now()
    }

    /// The error an operation gets while the database is down.
    fn error(&self) -> PgError {
        let why = self.why.lock().unwrap_or_else(PoisonError::into_inner);
        PgError::unreachable(format!("unreachable ({why}); retrying in the background"))
    }
}

/// One operation's link between its caller and the request thread.
#[derive(Debug, Default)]
struct Ticket {
    /// The database answered this operation's first statement: from then
    /// on the caller waits up to [`OP_TIMEOUT`].
    alive: AtomicBool,
    /// The caller stopped waiting: a job not yet started is skipped.
    abandoned: AtomicBool,
}

impl Ticket {
    fn set_alive(&self) {
        self.alive.store(true, Ordering::SeqCst);
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }
}

/// Waits for a job's answer on `rx`, at most [`OP_TIMEOUT`] from `start`.
/// Until the job shows the database is there (its ticket alive) the caller
/// gives up early: at once when the database is known to be unreachable,
/// and after `deadline` unless the database answered something on another
/// connection lately (the job may be queued behind a write waiting for the
/// store lock: a slow database, not a dead one). A caller that stops
/// waiting marks the ticket abandoned, so the job is skipped.
fn await_answer<T>(
    rx: &mpsc::Receiver<Result<T, PgError>>,
    ticket: &Ticket,
    health: &Health,
    start: Instant,
    deadline: Instant,
) -> Result<T, PgError> {
    let give_up = |e: PgError| {
        ticket.abandoned.store(true, Ordering::SeqCst);
        Err(e)
    };
    let end = start + OP_TIMEOUT;
    loop {
        let now = Instant::now();
        if now >= end {
            return give_up(PgError::new(format!(
                "no answer from the database within {} s",
                OP_TIMEOUT.as_secs()
            )));
        }
        if !ticket.is_alive() {
            if health.is_down() {
                return give_up(health.error());
            }
            if now >= deadline && !health.answered_lately() {
                // nothing answered on any connection either: the next
                // callers fail at once until something does
                let why = format!(
                    "no answer from the database within {} ms",
                    UNREACHABLE_TIMEOUT.as_millis()
                );
                health.set_down(&why);
                return give_up(PgError::unreachable(why));
            }
        }
        match rx.recv_timeout((end - now).min(WAIT_SLICE)) {
            Ok(out) => return out,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return give_up(PgError::new("the database thread has stopped"))
            }
        }
    }
}

/// A store URL parsed, with a form that is safe to print.
#[derive(Clone)]
pub struct StoreUrl {
    config: postgres::Config,
    shown: String,
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl StoreUrl {
    /// Parses `postgres://USER@HOST:PORT/DB` (or `postgresql://`, with the
    /// `postgres` crate's query parameters). The error never repeats the
    /// URL, which may hold a password.
    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("must be a postgres://USER@HOST:PORT/DB URL".into());
        }
        let mut config =
            postgres::Config::from_str(url).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // a dead server or network fails a request instead of hanging it
        config.tcp_user_timeout(UNREACHABLE_TIMEOUT);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("sealgate");
        }
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(s) => s.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let shown = format!(
            "postgres://{}@{host}:{port}/{}",
            config.get_user().unwrap_or(""),
            config.get_dbname().unwrap_or("")
        );
        Ok(StoreUrl { config, shown })
    }
}

/// Runs `f`, which waits for the database, so that the wait does not hold
/// up the other tasks of the multi-threaded tokio runtime it may be called
/// from (`block_in_place` hands the worker's tasks to another thread: a
/// slow or unreachable database delays this call, not warm requests). On
/// a plain thread or a current-thread runtime `f` just runs.
pub(crate) fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A job for the request thread.
type Job = Box<dyn FnOnce(&mut Link) + Send>;

/// The request thread's connection, made (again) on demand.
pub(crate) struct Link {
    url: StoreUrl,
    client: Option<Client>,
    counters: Arc<Counters>,
    health: Arc<Health>,
}

impl Link {
    /// The connection, made if there is none; a failed connect marks the
    /// database unreachable, a successful one reachable.
    fn client(&mut self) -> Result<&mut Client, PgError> {
        let c = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            _ => {
                self.count(1);
                match self.url.config.connect(NoTls) {
                    Ok(c) => {
                        self.health.answered();
                        c
                    }
                    Err(e) => {
                        let e = PgError::from(e);
                        self.health.set_down(&e.0);
                        return Err(PgError::unreachable(e.0));
                    }
                }
            }
        };
        Ok(self.client.insert(c))
    }

    /// After a job: forgets the connection if it is gone (the error says
    /// so, or the client noticed); answers whether a retry on a new
    /// connection may help (a connection was lost, not a connect refused).
    fn drop_if_lost<T>(&mut self, out: &Result<T, PgError>) -> bool {
        let lost = matches!(out, Err(e) if e.connection_lost())
            || self.client.as_ref().is_some_and(Client::is_closed);
        if lost {
            self.client = None;
        }
        lost && !matches!(out, Err(e) if e.is_unreachable())
    }

    fn count(&self, n: u64) {
        self.counters.round_trips.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counters of the PostgreSQL backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Statements (and connects) made for callers: writes, loads, catch-up
    /// pulls after a miss. Warm reads add nothing.
    pub round_trips: u64,
    /// Pulls made by the listener (notifications and polls).
    pub sync_pulls: u64,
    /// Rows the listener and catch-ups applied from other writers.
    pub rows_applied: u64,
    /// Time callers spent waiting for the database.
    pub wait: Duration,
    /// From commit (elsewhere) to applied here, for the oldest change the
    /// last pull that brought any brought (the database's clock).
    pub last_lag: Duration,
    /// The largest such lag since the store opened.
    pub max_lag: Duration,
}

/// The counters, shared with the threads.
#[derive(Debug, Default)]
struct Counters {
    round_trips: AtomicU64,
    sync_pulls: AtomicU64,
    rows_applied: AtomicU64,
    wait_micros: AtomicU64,
    last_lag_micros: AtomicU64,
    max_lag_micros: AtomicU64,
}

impl Counters {
    fn waited(&self, since: Instant) {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.wait_micros.fetch_add(us, Ordering::Relaxed);
    }

    /// Applies pulled rows that are new since `since`, recording their lag.
    fn apply(&self, synced: &Synced, rows: Pulled, since: i64) {
        let lag = rows
            .iter()
            .filter(|r| r.revision > since)
            .map(|r| r.age)
            .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
        let n = synced.apply_pulled(rows);
        self.rows_applied.fetch_add(n as u64, Ordering::Relaxed);
        if let (Some(age), true) = (lag, n > 0) {
            let us = (age.max(0.0) * 1e6) as u64;
            self.last_lag_micros.store(us, Ordering::Relaxed);
            self.max_lag_micros.fetch_max(us, Ordering::Relaxed);
        }
    }
}

/// The PostgreSQL side of a key store.
pub(crate) struct PgBackend {
    url: StoreUrl,
    jobs: Mutex<mpsc::Sender<Job>>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    health: Arc<Health>,
    /// When the last catch-up pull started and how it ended; held while
    /// one runs.
    catch_up: Mutex<Option<(Instant, Result<(), PgError>)>>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend").field("url", &self.url).finish()
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        // the listener sees it within one poll; the request thread ends
        // when the job channel closes with this struct
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What `open` found in the database.
pub(crate) struct Opened {
    /// The key-check value, if the store was initialised.
    pub(crate) key_check: Option<Vec<u8>>,
}

impl PgBackend {
    /// Starts the request thread and migrates the schema. With `create`
    /// false, a database holding no sealgate tables is refused untouched
    /// (`Ok(None)`).
    pub(crate) fn start(url: StoreUrl, create: bool) -> Result<Option<(Self, Opened)>, PgError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let counters = Arc::new(Counters::default());
        let health = Arc::new(Health::new(url.clone()));
        let mut link = Link {
            url: url.clone(),
            client: None,
            counters: counters.clone(),
            health: health.clone(),
        };
        std::thread::Builder::new()
            .name("sealgate-pg".into())
            .spawn(move || {
                for job in rx {
                    job(&mut link);
                }
            })
            .map_err(|e| PgError::new(format!("cannot start the database thread: {e}")))?;
        let backend = PgBackend {
            url,
            jobs: Mutex::new(tx),
            stop: Arc::new(AtomicBool::new(false)),
            counters,
            health,
            catch_up: Mutex::new(None),
        };
        // opening may pull a large store: the reachable bound applies
        let migrated = backend.run(OP_TIMEOUT, move |link| {
            let client = link.client()?;
            link_migrate(client, create)
        })?;
        if !migrated {
            return Ok(None);
        }
        let key_check = backend.run(OP_TIMEOUT, |link| {
            link.count(1);
            let row = link.client()?.query_opt(
                "SELECT value FROM sealgate_meta WHERE name = 'key_check'",
                &[],
            )?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })?;
        Ok(Some((backend, Opened { key_check })))
    }

    /// The URL, safe to print.
    pub(crate) fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// Counters.
    pub(crate) fn stats(&self) -> BackendStats {
        let c = &self.counters;
        let micros = |a: &AtomicU64| Duration::from_micros(a.load(Ordering::Relaxed));
        BackendStats {
            round_trips: c.round_trips.load(Ordering::Relaxed),
            sync_pulls: c.sync_pulls.load(Ordering::Relaxed),
            rows_applied: c.rows_applied.load(Ordering::Relaxed),
            wait: micros(&c.wait_micros),
            last_lag: micros(&c.last_lag_micros),
            max_lag: micros(&c.max_lag_micros),
        }
    }

    /// Fails at once while the database is known to be unreachable.
    fn check_reachable(&self) -> Result<(), PgError> {
        if self.health.is_down() {
            return Err(self.health.error());
        }
        Ok(())
    }

    /// Runs `f` on the request thread and waits for its answer, at most
    /// `bound` (and at most [`OP_TIMEOUT`]); fails at once if the database
    /// is, or is found meanwhile, unreachable. A failed job drops a broken
    /// connection; the next job connects again.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        bound: Duration,
        f: impl Fn(&mut Link) -> Result<R, PgError> + Send + 'static,
    ) -> Result<R, PgError> {
        self.check_reachable()?;
        let ticket = Arc::new(Ticket::default());
        let job_ticket = ticket.clone();
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |link| {
            if job_ticket.is_abandoned() {
                return;
            }
            let mut out = f(link);
            // a connection the server closed (restart, failover, idle
            // timeout) shows at its first use: the jobs are reads or
            // idempotent, so one retry on a new connection is safe
            if out.is_err() && link.drop_if_lost(&out) && !job_ticket.is_abandoned() {
                out = f(link);
                link.drop_if_lost(&out);
            }
            if out.is_ok() {
                link.health.answered();
            }
            let _ = reply.send(out);
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| PgError::new("the database thread has stopped"))?;
        let start = Instant::now();
        let out = await_answer(&answer, &ticket, &self.health, start, start + bound);
        self.counters.waited(start);
        out
    }

    /// Stores the key-check value unless one is there; answers the one
    /// that is there afterwards (another node may have won).
    pub(crate) fn init_key_check(&self, check: Vec<u8>) -> Result<Vec<u8>, PgError> {
        self.run(OP_TIMEOUT, move |link| {
            link.count(2);
            let client = link.client()?;
            client.execute(
                "INSERT INTO sealgate_meta (name, value) VALUES ('key_check', $1)
                 ON CONFLICT (name) DO NOTHING",
                &[&check],
            )?;
            let row = client.query_one(
                "SELECT value FROM sealgate_meta WHERE name = 'key_check'",
                &[],
            )?;
            Ok(row.get::<_, Vec<u8>>(0))
        })
    }

    /// Every row changed since `since` (0: everything, tombstones included),
    /// waiting at most `bound`.
    pub(crate) fn pull(&self, since: i64, bound: Duration) -> Result<Pulled, PgError> {
        self.run(bound, move |link| {
            link.count(1);
            pull(link.client()?, since)
        })
    }

    /// Pulls what changed since the last revision into `synced`, after a
    /// read that missed at `missed_at`. Concurrent misses coalesce: a pull
    /// that started after the miss already answers it (its outcome is this
    /// one's), so each miss costs at most one round trip and one pull runs
    /// at a time. Fails when the database does not answer within
    /// [`UNREACHABLE_TIMEOUT`] of the miss (at once while it is known to be
    /// unreachable): the caller cannot tell "not found" from "not loaded".
    pub(crate) fn catch_up(&self, synced: &Synced, missed_at: Instant) -> Result<(), PgError> {
        let mut last = self.catch_up.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((started, outcome)) = last.as_ref() {
            if *started >= missed_at {
                return outcome.clone();
            }
        }
        let started = Instant::now();
        // the wait for the lock counts: the miss's bound runs from the miss
        let bound = (missed_at + UNREACHABLE_TIMEOUT).saturating_duration_since(started);
        let since = synced.revision();
        let out = self
            .pull(since, bound)
            .map(|rows| self.counters.apply(synced, rows, since));
        *last = Some((started, out.clone()));
        out
    }

    /// Opens a write: on the request thread, begins a transaction, takes the
    /// store-wide lock and pulls what changed since `since`. The returned
    /// session holds the transaction open until it commits or drops.
    /// `arrived` is when the caller asked for the write (before waiting for
    /// this node's other writes): the [`UNREACHABLE_TIMEOUT`] bound runs
    /// from then.
    pub(crate) fn begin_write(
        &self,
        since: i64,
        arrived: Instant,
    ) -> Result<(WriteSession, Pulled), PgError> {
        self.check_reachable()?;
        let ticket = Arc::new(Ticket::default());
        let job_ticket = ticket.clone();
        let (pulled_tx, pulled_rx) = mpsc::sync_channel::<Result<Pulled, PgError>>(1);
        let (step_tx, step_rx) = mpsc::sync_channel::<Vec<Mutation>>(1);
        let (done_tx, done_rx) = mpsc::sync_channel::<Result<i64, PgError>>(1);
        let job: Job = Box::new(move |link| {
            if job_ticket.is_abandoned() {
                return;
            }
            let mut began = false;
            let mut out = write_job(link, since, &job_ticket, &pulled_tx, &step_rx, &mut began);
            // as in `run`: a closed connection found before the caller saw
            // anything (nothing was written) is retried once on a new one
            if out.is_err() && link.drop_if_lost(&out) && !began && !job_ticket.is_abandoned() {
                out = write_job(link, since, &job_ticket, &pulled_tx, &step_rx, &mut began);
                link.drop_if_lost(&out);
            }
            match out {
                Ok(Some(rev)) => {
                    let _ = done_tx.send(Ok(rev));
                }
                Ok(None) => {}
                Err(e) => {
                    // whichever side is still waiting hears it
                    let _ = pulled_tx.try_send(Err(e.clone()));
                    let _ = done_tx.send(Err(e));
                }
            }
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| PgError::new("the database thread has stopped"))?;
        let start = Instant::now();
        let pulled = await_answer(
            &pulled_rx,
            &ticket,
            &self.health,
            start,
            arrived + UNREACHABLE_TIMEOUT,
        );
        self.counters.waited(start);
        let pulled = pulled?;
        Ok((
            WriteSession {
                step: step_tx,
                done: done_rx,
                counters: self.counters.clone(),
            },
            pulled,
        ))
    }

    /// Starts the listener thread, which applies other nodes' changes to
    /// `synced` until the backend drops.
    pub(crate) fn start_listener(&self, synced: Weak<Synced>) -> Result<(), PgError> {
        let url = self.url.clone();
        let stop = self.stop.clone();
        let counters = self.counters.clone();
        let health = self.health.clone();
        std::thread::Builder::new()
            .name("sealgate-pg-listen".into())
            .spawn(move || listen(url, synced, stop, counters, health))
            .map(drop)
            .map_err(|e| PgError::new(format!("cannot start the listener thread: {e}")))
    }
}

/// An open write transaction holding the store-wide lock.
pub(crate) struct WriteSession {
    step: mpsc::SyncSender<Vec<Mutation>>,
    done: mpsc::Receiver<Result<i64, PgError>>,
    counters: Arc<Counters>,
}

impl WriteSession {
    /// Writes `mutations` (in order, each with a new revision), notifies the
    /// other nodes and commits; answers the last revision written. Dropping
    /// the session instead rolls back.
    pub(crate) fn commit(self, mutations: Vec<Mutation>) -> Result<i64, PgError> {
        self.step
            .send(mutations)
            .map_err(|_| PgError::new("the write transaction ended early"))?;
        let start = Instant::now();
        let done = self.done.recv_timeout(OP_TIMEOUT);
        self.counters.waited(start);
        match done {
            Ok(out) => out,
            Err(_) => Err(PgError::new(format!(
                "the database did not confirm the commit within {} s; \
                 whether it committed is learnt from the next pull",
                OP_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// The request thread's half of a write. `Ok(None)`: the caller abandoned
/// it (rolled back).
fn write_job(
    link: &mut Link,
    since: i64,
    ticket: &Ticket,
    pulled_tx: &mpsc::SyncSender<Result<Pulled, PgError>>,
    step_rx: &mpsc::Receiver<Vec<Mutation>>,
    began: &mut bool,
) -> Result<Option<i64>, PgError> {
    link.count(3);
    let health = link.health.clone();
    let client = link.client()?;
    let mut tx = client.transaction()?;
    // the database answered: from here a wait (for the store lock held by
    // another writer) is a slow database, not an unreachable one
    ticket.set_alive();
    health.answered();
    lock_store(&mut tx)?;
    let rows = pull_tx(&mut tx, since)?;
    *began = true;
    if pulled_tx.send(Ok(rows)).is_err() {
        return Ok(None);
    }
    // the caller plans against what it pulled; a dropped session rolls back
    let Ok(mutations) = step_rx.recv() else {
        return Ok(None);
    };
    let mut last = since;
    for m in &mutations {
        last = write_one(&mut tx, m)?;
    }
    tx.execute("SELECT pg_notify($1, current_schema())", &[&CHANNEL])?;
    tx.commit()?;
    link.count(mutations.len() as u64 + 2);
    Ok(Some(last))
}

/// Writes one mutation with a fresh revision; answers the revision.
fn write_one(tx: &mut Transaction<'_>, m: &Mutation) -> Result<i64, PgError> {
    let json = |v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| PgError::new(format!("record does not encode: {e}")))
    };
    let row = match m {
        Mutation::PutKey(rec) => {
            let record = json(serde_json::to_value(rec.as_ref()))?;
            tx.query_one(
                "INSERT INTO sealgate_keys (key_id, revision, alias, record)
                 VALUES ($1, nextval('sealgate_revision'), $2, $3)
                 ON CONFLICT (key_id) DO UPDATE
                 SET revision = EXCLUDED.revision, alias = EXCLUDED.alias,
                     record = EXCLUDED.record, changed_at = clock_timestamp()
                 RETURNING revision",
                &[
                    &rec.metadata.key_id.to_string(),
                    &rec.metadata.alias,
                    &record,
                ],
            )?
        }
        Mutation::DeleteKey(id) => tx.query_one(
            "UPDATE sealgate_keys
             SET revision = nextval('sealgate_revision'), alias = NULL, record = NULL,
                 changed_at = clock_timestamp()
             WHERE key_id = $1 RETURNING revision",
            &[&id.to_string()],
        )?,
        Mutation::PutCredential(c) => {
            let record = json(serde_json::to_value(c))?;
            tx.query_one(
                "INSERT INTO sealgate_credentials (id, revision, record)
                 VALUES ($1, nextval('sealgate_revision'), $2)
                 ON CONFLICT (id) DO UPDATE
                 SET revision = EXCLUDED.revision, record = EXCLUDED.record,
                     changed_at = clock_timestamp()
                 RETURNING revision",
                &[&c.id, &record],
            )?
        }
    };
    Ok(row.get(0))
}

/// Takes the store-wide transaction-scoped advisory lock.
fn lock_store(tx: &mut Transaction<'_>) -> Result<(), PgError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&LOCK_CLASS],
    )?;
    Ok(())
}

fn pull(client: &mut Client, since: i64) -> Result<Pulled, PgError> {
    let rows = client.query(PULL, &[&since])?;
    Ok(rows.into_iter().map(row_of).collect())
}

fn pull_tx(tx: &mut Transaction<'_>, since: i64) -> Result<Pulled, PgError> {
    let rows = tx.query(PULL, &[&since])?;
    Ok(rows.into_iter().map(row_of).collect())
}

fn row_of(r: postgres::Row) -> Row {
    Row {
        is_key: r.get(0),
        id: r.get(1),
        revision: r.get(2),
        record: r.get(3),
        age: r.get(4),
    }
}

/// Creates or upgrades the schema under the advisory lock; idempotent and
/// safe when several nodes start at once. With `create` false, a database
/// without the tables is left untouched (`Ok(false)`).
fn link_migrate(client: &mut Client, create: bool) -> Result<bool, PgError> {
    let schema: Option<String> = client.query_one("SELECT current_schema()", &[])?.get(0);
    if schema.is_none() {
        return Err(PgError::new(
            "the search_path names no existing schema to hold the key store's tables",
        ));
    }
    let mut tx = client.transaction()?;
    lock_store(&mut tx)?;
    let exists: bool = tx
        .query_one(
            "SELECT to_regclass('sealgate_schema_version') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !exists && !create {
        return Ok(false);
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS sealgate_schema_version (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM sealgate_schema_version",
            &[],
        )?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(PgError::new(format!(
            "the database's key store schema is version {current}, newer than this build \
             knows ({SCHEMA_VERSION}); upgrade sealgate"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO sealgate_schema_version (version) VALUES ($1)",
            &[&version],
        )?;
        tracing::info!(version, "key store schema migrated");
    }
    tx.commit()?;
    Ok(true)
}

/// The listener: connect, `LISTEN`, then pull after each notification and
/// at least every [`POLL_INTERVAL`]; reconnect after a failure.
fn listen(
    url: StoreUrl,
    synced: Weak<Synced>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    health: Arc<Health>,
) {
    let mut client: Option<Client> = None;
    // notifications carry the writer's schema: another store sharing the
    // database does not wake this one
    let mut schema = String::new();
    let mut down_logged = false;
    while !stop.load(Ordering::SeqCst) {
        let Some(shared) = synced.upgrade() else {
            return;
        };
        let c = match client.take() {
            Some(c) if !c.is_closed() => c,
            _ => match url.config.connect(NoTls).and_then(|mut c| {
                c.batch_execute(&format!("LISTEN {CHANNEL}"))?;
                let s: Option<String> = c.query_one("SELECT current_schema()", &[])?.get(0);
                Ok((c, s.unwrap_or_default()))
            }) {
                Ok((c, s)) => {
                    schema = s;
                    if down_logged {
                        tracing::info!(store = %url, "key store listener reconnected");
                        down_logged = false;
                    }
                    c
                }
                Err(e) => {
                    let e = PgError::from(e);
                    health.set_down(&e.0);
                    if !down_logged {
                        tracing::warn!(store = %url, error = %e.0,
                            "key store listener cannot reach the database; retrying");
                        down_logged = true;
                    }
                    drop(shared);
                    std::thread::sleep(POLL_INTERVAL);
                    continue;
                }
            },
        };
        let client = client.insert(c);
        counters.sync_pulls.fetch_add(1, Ordering::Relaxed);
        let since = shared.revision();
        match pull(client, since) {
            Ok(rows) => {
                health.answered();
                counters.apply(&shared, rows, since);
            }
            Err(e) => {
                tracing::warn!(store = %url, error = %e.0, "key store listener pull failed");
            }
        }
        drop(shared);
        // wait for a notification of this store (or the poll interval),
        // then drain the rest
        let deadline = Instant::now() + POLL_INTERVAL;
        let mut notes = client.notifications();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match notes.timeout_iter(left).next() {
                Ok(Some(n)) if n.payload() != schema => continue,
                _ => break,
            }
        }
        while let Ok(Some(_)) = notes.iter().next() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_is_shown_without_its_password() {
        let u = StoreUrl::parse("postgres://app:hunter2@db.internal:6432/keys?sslmode=disable")
            .unwrap();
        assert_eq!(u.to_string(), "postgres://app@db.internal:6432/keys");
        assert!(!format!("{u:?}").contains("hunter2"));
        let u = StoreUrl::parse("postgresql://app@db/keys").unwrap();
        assert_eq!(u.to_string(), "postgres://app@db:5432/keys");
        for bad in [
            "mysql://app:hunter2@db/keys",
            "postgres://app:hunter2@db:notaport/keys",
            "db.internal:5432",
        ] {
            let e = StoreUrl::parse(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_schema_migrations_are_numbered_from_one() {
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
        assert!(MIGRATIONS[0].contains("CREATE TABLE sealgate_keys"));
    }
}
