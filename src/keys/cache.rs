//! The data-key cache: reuses a DEK for sealing within age, message and
//! byte limits, and keeps unwrapped DEK ciphers for opening, so the key
//! provider (and its AES key wrap, or a remote KMS) is off the hot path.
//!
//! Sealing keys are cached per `(CMK name, SHA-256(partition))`, as the AWS
//! Encryption SDK keys its cache by the hash of the encryption context: two
//! partitions never share a DEK. Opening ciphers are cached by the exact
//! `(CMK version, wrapped DEK)` bytes an envelope carries.
//!
//! Concurrent misses for the same cache key are coalesced: each key has a
//! slot whose mutex is held while the provider is called, so a burst of N
//! requests makes one provider call and N−1 waiters reuse its result. A
//! provider error is not cached: the next caller tries again.
//!
//! Every entry remembers the provider's [`KeyProvider::epoch`] when it was
//! made; when any key changes in this process (rotation, disable, alias
//! move, minimum decryption version — via the admin socket, a KMS face or
//! automatic rotation) the epoch moves and every cached DEK is dropped on
//! its next use: new writes use the new primary at once. A provider whose
//! changes happen elsewhere (epoch fixed at 0) relies on the max age, which
//! is why the default max age is short (5 min).
//!
//! # Remote providers: the seam
//!
//! With a remote KMS ([`KeyProvider::is_remote`]) a miss makes a network
//! call, while the cache is synchronous and called from async proxy code.
//! The cache stays synchronous: its single flight (the slot mutex), its
//! limits and its warm path (a `try_lock` and a counter: no allocation, no
//! await, no remote call) are unchanged, and its synchronous callers (the
//! KMS faces on blocking threads, rewrap, the CLI) keep working. What is
//! different on a miss: the provider runs the call on its own client
//! runtime and waits for it inside `tokio::task::block_in_place`
//! (`keys::remote::without_stalling`), and so does a caller queued behind
//! another's call on a busy slot — the runtime moves its other tasks to a
//! fresh worker instead of stalling. Making the miss path async instead
//! would have meant an async mutex per slot and an async API rippling
//! through every caller for a path that runs once per DEK. A miss storm
//! (many distinct slots at once) is bounded by the provider's own limit on
//! calls in flight (`[provider] max_concurrent_calls`). When a remote call
//! fails, the callers queued behind it get the same error at once instead
//! of each spending the retry budget again.
//!
//! Keys derived for deterministic fields ([`DataKeyCache::deterministic_key`])
//! are cached the same way, by `(CMK, context)`.
//! Dropped entries zeroize their key schedule (`DekCipher`).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use lru::LruCache;
use sha2::{Digest, Sha256};

use super::provider::{KeyError, KeyProvider};
use crate::clock::{Clock, SystemClock};
use crate::envelope::{CmkRef, DetKey, Envelope, SealingKey, WrappedDek};
use crate::secret::DekCipher;

/// Limits of the data-key cache.
///
/// The defaults are deliberately conservative:
/// - `max_age` 5 minutes: a disabled or rotated CMK stops being used for
///   new seals (and cached opens) within 5 minutes.
/// - `max_messages` 2^20: with random 96-bit nonces the chance of a nonce
///   collision after n messages is about n²/2^97, i.e. 2^-57 at 2^20 — far
///   inside NIST SP 800-38D's 2^32-invocation bound for random nonces.
/// - `max_bytes` 2^36 (64 GiB) of plaintext per DEK.
/// - `capacity` 1024 DEKs for sealing, and 1024 ciphers for opening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// A DEK is not used (for sealing or from the opening cache) once this old.
    pub max_age: Duration,
    /// Values sealed under one DEK before a fresh one is made.
    pub max_messages: u64,
    /// Plaintext bytes sealed under one DEK before a fresh one is made.
    pub max_bytes: u64,
    /// Entries in each of the sealing and opening caches (0 disables caching).
    pub capacity: usize,
    /// When false, every call goes to the provider (for benchmarks).
    pub enabled: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_age: Duration::from_secs(300),
            max_messages: 1 << 20,
            max_bytes: 1 << 36,
            capacity: 1024,
            enabled: true,
        }
    }
}

/// Counters of the cache since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Calls served by a DEK that was already cached when they arrived.
    pub hits: u64,
    /// Calls that found no usable DEK: they called the provider, or waited
    /// for a concurrent call to it (so `misses - provider_calls` is the
    /// number of coalesced waiters, when the provider does not fail).
    pub misses: u64,
    /// Calls made to the key provider (generate or unwrap), failed ones too.
    pub provider_calls: u64,
    /// Cached DEKs dropped: past an age, message or byte limit, or pushed
    /// out by capacity.
    pub evictions: u64,
}

/// A cached entry's creation time, for expiry.
trait Aged {
    /// When the DEK was made or unwrapped.
    fn created(&self) -> Instant;
}

/// A sealing DEK in use, with what it has sealed so far.
struct SealEntry {
    /// The key handed to sealers.
    key: Arc<SealingKey>,
    /// When the DEK was generated.
    created: Instant,
    /// Values sealed (or reserved) under it.
    messages: u64,
    /// Plaintext bytes sealed (or reserved) under it.
    bytes: u64,
    /// The provider's epoch when it was made.
    epoch: u64,
}

impl Aged for SealEntry {
    fn created(&self) -> Instant {
        self.created
    }
}

/// An unwrapped DEK's cipher for opening.
struct OpenEntry {
    /// The initialised cipher.
    cipher: Arc<DekCipher>,
    /// When the DEK was unwrapped (or generated, if sealed here).
    created: Instant,
    /// The provider's epoch when it was made.
    epoch: u64,
}

impl Aged for OpenEntry {
    fn created(&self) -> Instant {
        self.created
    }
}

/// One cache key's slot. Its mutex is held across the provider call, which
/// is what coalesces concurrent misses.
struct Slot<T> {
    /// The cached entry, if any.
    state: Mutex<Option<T>>,
    /// Bumped each time a new entry is stored; tells a waiter whether it
    /// was served by a call made while it waited.
    generation: AtomicU64,
    /// Callers blocked on `state` right now.
    waiting: AtomicUsize,
    /// Bumped each time a remote provider call for this slot fails.
    failures: AtomicU64,
    /// The error of the last failed remote call, handed to its waiters.
    last_error: Mutex<Option<KeyError>>,
}

impl<T> Slot<T> {
    /// An empty slot.
    fn new() -> Self {
        Slot {
            state: Mutex::new(None),
            generation: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Records a failed remote call, for the callers queued behind it.
    fn fail(&self, e: &KeyError) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
        self.failures.fetch_add(1, Ordering::SeqCst);
    }

    /// The error of a remote call that failed while the caller waited
    /// (`seen` = the failure count before it queued).
    fn failed_since(&self, seen: u64) -> Option<KeyError> {
        if self.failures.load(Ordering::SeqCst) == seen {
            return None;
        }
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Locks the slot; also says whether the caller had to wait. With a
    /// remote provider (`remote`) the wait does not stall the runtime.
    fn lock(&self, remote: bool) -> (MutexGuard<'_, Option<T>>, bool) {
        match self.state.try_lock() {
            Ok(guard) => (guard, false),
            Err(TryLockError::Poisoned(p)) => (p.into_inner(), false),
            Err(TryLockError::WouldBlock) => {
                self.waiting.fetch_add(1, Ordering::SeqCst);
                let lock = || self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let guard = if remote {
                    super::remote::without_stalling(lock)
                } else {
                    lock()
                };
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                (guard, true)
            }
        }
    }

    /// Stores a fresh entry (the caller holds the lock).
    fn store(&self, guard: &mut MutexGuard<'_, Option<T>>, entry: T) {
        **guard = Some(entry);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// A bounded LRU map of slots.
struct SlotMap<K: std::hash::Hash + Eq, T> {
    /// The slots, least recently used first out.
    map: Mutex<LruCache<K, Arc<Slot<T>>>>,
}

impl<K: std::hash::Hash + Eq + Clone, T: Aged> SlotMap<K, T> {
    /// An empty map holding at most `capacity` slots.
    fn new(capacity: NonZeroUsize) -> Self {
        SlotMap {
            map: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Locks the map.
    fn lock(&self) -> MutexGuard<'_, LruCache<K, Arc<Slot<T>>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot for `id`, made if missing; returns how many cached entries
    /// were pushed out to make room.
    fn slot(&self, id: &K) -> (Arc<Slot<T>>, u64) {
        let mut map = self.lock();
        if let Some(slot) = map.get(id) {
            return (Arc::clone(slot), 0);
        }
        let slot = Arc::new(Slot::new());
        let evicted = match map.push(id.clone(), Arc::clone(&slot)) {
            Some((_, old)) => u64::from(holds_entry(&old)),
            None => 0,
        };
        (slot, evicted)
    }

    /// Adds a ready entry unless `id` already has a slot; returns evictions.
    fn insert_if_absent(&self, id: &K, entry: T) -> u64 {
        let mut map = self.lock();
        if map.contains(id) {
            return 0;
        }
        let slot = Slot::new();
        *slot.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(entry);
        match map.push(id.clone(), Arc::new(slot)) {
            Some((_, old)) => u64::from(holds_entry(&old)),
            None => 0,
        }
    }

    /// Drops every idle slot that is empty or whose entry `expired`;
    /// returns how many entries were dropped. Busy slots are skipped.
    fn sweep(&self, expired: impl Fn(&T) -> bool) -> u64 {
        let mut map = self.lock();
        let mut dead = Vec::new();
        let mut dropped = 0;
        for (id, slot) in map.iter() {
            if let Ok(state) = slot.state.try_lock() {
                match &*state {
                    None => dead.push(id.clone()),
                    Some(e) if expired(e) => {
                        dead.push(id.clone());
                        dropped += 1;
                    }
                    Some(_) => {}
                }
            }
        }
        for id in dead {
            map.pop(&id);
        }
        dropped
    }

    /// Drops every slot.
    fn clear(&self) {
        self.lock().clear();
    }

    /// Callers blocked on the slot for `id` (for tests of coalescing).
    #[cfg(test)]
    fn waiting(&self, id: &K) -> usize {
        self.lock()
            .peek(id)
            .map_or(0, |s| s.waiting.load(Ordering::SeqCst))
    }
}

/// True when a slot pushed out of a map still held an entry (or was busy).
fn holds_entry<T>(slot: &Slot<T>) -> bool {
    slot.state.try_lock().map_or(true, |s| s.is_some())
}

/// Cache key of a sealing DEK: SHA-256 of the CMK name and the partition.
type SealId = [u8; 32];
/// Cache key of an opening cipher: the CMK version and the wrapped bytes.
type OpenId = (CmkRef, WrappedDek);

/// Opening id of a remote data key: the SHA-256 of the provider header
/// field (key id, context template and CiphertextBlob).
fn blob_id(field: &[u8]) -> [u8; 32] {
    Sha256::digest(field).into()
}

/// Sealing key id: `SHA-256(u64le(len(key)) || key || partition)`.
fn seal_id(key: &str, partition: &[u8]) -> SealId {
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_le_bytes());
    h.update(key.as_bytes());
    h.update(partition);
    h.finalize().into()
}

/// Thread-safe cache of data keys in front of a [`KeyProvider`].
pub struct DataKeyCache {
    /// Where DEKs come from.
    provider: Arc<dyn KeyProvider>,
    /// The limits.
    config: CacheConfig,
    /// The time source (its monotonic reading): injectable so tests never
    /// sleep.
    clock: Arc<dyn Clock>,
    /// Caching is on (enabled and a non-zero capacity).
    caching: bool,
    /// DEKs for sealing.
    sealing: SlotMap<SealId, SealEntry>,
    /// Ciphers for opening.
    opening: SlotMap<OpenId, OpenEntry>,
    /// Ciphers for opening envelopes of the provider form, by the SHA-256
    /// of their header field (key id, template, remote CiphertextBlob).
    remote_opening: SlotMap<[u8; 32], OpenEntry>,
    /// The provider is a remote KMS.
    remote: bool,
    /// Keys derived for deterministic fields.
    derived: super::derive::DerivedKeys,
    /// When expired entries were last swept out.
    last_sweep: Mutex<Option<Instant>>,
    /// See [`CacheStats::hits`].
    hits: AtomicU64,
    /// See [`CacheStats::misses`].
    misses: AtomicU64,
    /// See [`CacheStats::provider_calls`].
    provider_calls: AtomicU64,
    /// See [`CacheStats::evictions`].
    evictions: AtomicU64,
}

impl std::fmt::Debug for DataKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyCache")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl DataKeyCache {
    /// A cache in front of `provider`, reading time from `clock` (its
    /// monotonic reading, [`Clock::instant`]).
    pub fn new(provider: Arc<dyn KeyProvider>, config: CacheConfig, clock: Arc<dyn Clock>) -> Self {
        let capacity = NonZeroUsize::new(config.capacity).unwrap_or(NonZeroUsize::MIN);
        DataKeyCache {
            caching: config.enabled && config.capacity > 0,
            config,
            clock,
            sealing: SlotMap::new(capacity),
            opening: SlotMap::new(capacity),
            remote_opening: SlotMap::new(capacity),
            remote: provider.is_remote(),
            derived: super::derive::DerivedKeys::new(capacity),
            provider,
            last_sweep: Mutex::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            provider_calls: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// A cache in front of `provider` using the system's monotonic clock.
    pub fn with_system_clock(provider: Arc<dyn KeyProvider>, config: CacheConfig) -> Self {
        Self::new(provider, config, Arc::new(SystemClock))
    }

    /// The partition a route's seals share a data key in: the rendered
    /// context with the local store; with a remote provider the route's
    /// context template, so a per-record context (`{id}` in the path) does
    /// not cost one remote call per record — each field's AAD still binds
    /// the rendered context.
    pub fn partition<'a>(&self, rendered: &'a str, template: &'a str) -> &'a str {
        if self.remote {
            template
        } else {
            rendered
        }
    }

    /// True when a remote KMS holds the CMKs.
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// The limits in force.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// A key to seal one value of `plaintext_len` bytes under the CMK named
    /// `key` (KeyId or alias), for the given partition. Reuses the cached
    /// DEK for `(key, partition)` while it is younger than `max_age` and
    /// has sealed fewer than `max_messages` values and at most `max_bytes`
    /// bytes including this one; counts this use against it.
    ///
    /// A value larger than `max_bytes` gets a fresh, uncached DEK.
    pub fn sealing_key(
        &self,
        key: &str,
        partition: &[u8],
        plaintext_len: usize,
    ) -> Result<Arc<SealingKey>, KeyError> {
        let len = plaintext_len as u64;
        if !self.caching || len > self.config.max_bytes {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return self.generate(key, partition).map(Arc::new);
        }
        self.reserve(key, partition, 1, len)
    }

    /// One key to seal a batch of `messages` values totalling
    /// `plaintext_bytes` bytes (one request body's fields): one lookup and
    /// one reservation instead of one per value, with the same limits — the
    /// cached DEK is reused only when the whole batch fits under
    /// `max_messages` and `max_bytes`, otherwise a fresh one is made and
    /// the batch counted against it.
    ///
    /// Returns `Ok(None)` when one DEK cannot take the batch at all (more
    /// than `max_messages` values or `max_bytes` bytes), when caching is
    /// off, or for an empty batch: the caller then asks
    /// [`sealing_key`](Self::sealing_key) per value.
    pub fn sealing_key_for_batch(
        &self,
        key: &str,
        partition: &[u8],
        messages: usize,
        plaintext_bytes: usize,
    ) -> Result<Option<Arc<SealingKey>>, KeyError> {
        let (n, len) = (messages as u64, plaintext_bytes as u64);
        if !self.caching || n == 0 || n > self.config.max_messages || len > self.config.max_bytes {
            return Ok(None);
        }
        self.reserve(key, partition, n, len).map(Some)
    }

    /// Counts `n` values of `len` bytes in all against the cached DEK for
    /// `(key, partition)`, replacing it first if they do not fit. The caller
    /// checked that a fresh DEK can take them.
    fn reserve(
        &self,
        key: &str,
        partition: &[u8],
        n: u64,
        len: u64,
    ) -> Result<Arc<SealingKey>, KeyError> {
        let id = seal_id(key, partition);
        let (slot, evicted) = self.sealing.slot(&id);
        self.count_evictions(evicted);
        let seen = slot.generation.load(Ordering::SeqCst);
        let seen_failures = slot.failures.load(Ordering::SeqCst);
        let (mut state, waited) = slot.lock(self.remote);
        let now = self.clock.instant();
        let epoch = self.provider.epoch();
        if let Some(entry) = state.as_mut() {
            let fits = entry.epoch == epoch
                && entry
                    .messages
                    .checked_add(n)
                    .is_some_and(|m| m <= self.config.max_messages)
                && entry
                    .bytes
                    .checked_add(len)
                    .is_some_and(|b| b <= self.config.max_bytes);
            if self.fresh(entry.created, now) && fits {
                entry.messages += n;
                entry.bytes += len;
                self.count_served(waited && slot.generation.load(Ordering::SeqCst) != seen);
                return Ok(Arc::clone(&entry.key));
            }
            *state = None;
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = self.failed_while_waiting(&slot, waited, seen_failures) {
            return Err(e);
        }
        self.maybe_sweep(now);
        let sealing = match self.generate(key, partition) {
            Ok(k) => Arc::new(k),
            Err(e) => return Err(self.failed(&slot, e)),
        };
        let seeded = OpenEntry {
            cipher: Arc::new(sealing.cipher.clone()),
            created: now,
            epoch,
        };
        let evicted = match &sealing.remote {
            Some(field) => self
                .remote_opening
                .insert_if_absent(&blob_id(field), seeded),
            None => self
                .opening
                .insert_if_absent(&(sealing.cmk, sealing.wrapped), seeded),
        };
        self.count_evictions(evicted);
        slot.store(
            &mut state,
            SealEntry {
                key: Arc::clone(&sealing),
                created: now,
                messages: n,
                bytes: len,
                epoch,
            },
        );
        Ok(sealing)
    }

    /// The KeyId of the CMK named by `key` (KeyId or alias), when the
    /// provider knows it.
    pub fn key_id_of(&self, key: &str) -> Option<[u8; 16]> {
        self.provider.key_id_of(key)
    }

    /// The cipher to open envelopes whose DEK is `wrapped` under `cmk`.
    /// Cached by those exact bytes until `max_age`; DEKs this cache made
    /// for sealing are already there.
    pub fn opening_key(
        &self,
        cmk: &CmkRef,
        wrapped: &WrappedDek,
    ) -> Result<Arc<DekCipher>, KeyError> {
        if !self.caching {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return self.unwrap(cmk, wrapped).map(Arc::new);
        }
        let id = (*cmk, *wrapped);
        let (slot, evicted) = self.opening.slot(&id);
        self.count_evictions(evicted);
        let seen = slot.generation.load(Ordering::SeqCst);
        let (mut state, waited) = slot.lock(self.remote);
        let now = self.clock.instant();
        let epoch = self.provider.epoch();
        if let Some(entry) = state.as_ref() {
            if self.fresh(entry.created, now) && entry.epoch == epoch {
                self.count_served(waited && slot.generation.load(Ordering::SeqCst) != seen);
                return Ok(Arc::clone(&entry.cipher));
            }
            *state = None;
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.maybe_sweep(now);
        let cipher = Arc::new(self.unwrap(cmk, wrapped)?);
        slot.store(
            &mut state,
            OpenEntry {
                cipher: Arc::clone(&cipher),
                created: now,
                epoch,
            },
        );
        Ok(cipher)
    }

    /// The cipher that opens `env`: by its remote CiphertextBlob (and the
    /// context template its DEK is bound to) for the provider form
    /// (`sg2.`), by CMK version and wrapped DEK for `sg1.`.
    pub fn envelope_key(&self, env: &Envelope) -> Result<Arc<DekCipher>, KeyError> {
        match (
            env.provider_field(),
            env.provider_blob(),
            env.provider_template(),
        ) {
            (Some(field), Some(blob), Some(template)) => {
                self.remote_opening_key(field, blob, template)
            }
            _ => self.opening_key(&env.cmk(), env.wrapped()),
        }
    }

    /// The cipher for a DEK a remote KMS wrapped as `blob` for the context
    /// template `template`: cached by the hash of the envelope's header
    /// `field` until `max_age`; one remote Decrypt per data key and node.
    fn remote_opening_key(
        &self,
        field: &[u8],
        blob: &[u8],
        template: &str,
    ) -> Result<Arc<DekCipher>, KeyError> {
        if !self.caching {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return self.decrypt_remote(blob, template).map(Arc::new);
        }
        let id = blob_id(field);
        let (slot, evicted) = self.remote_opening.slot(&id);
        self.count_evictions(evicted);
        let seen = slot.generation.load(Ordering::SeqCst);
        let seen_failures = slot.failures.load(Ordering::SeqCst);
        let (mut state, waited) = slot.lock(self.remote);
        let now = self.clock.instant();
        if let Some(entry) = state.as_ref() {
            if self.fresh(entry.created, now) {
                self.count_served(waited && slot.generation.load(Ordering::SeqCst) != seen);
                return Ok(Arc::clone(&entry.cipher));
            }
            *state = None;
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = self.failed_while_waiting(&slot, waited, seen_failures) {
            return Err(e);
        }
        self.maybe_sweep(now);
        let cipher = match self.decrypt_remote(blob, template) {
            Ok(c) => Arc::new(c),
            Err(e) => return Err(self.failed(&slot, e)),
        };
        slot.store(
            &mut state,
            OpenEntry {
                cipher: Arc::clone(&cipher),
                created: now,
                epoch: 0,
            },
        );
        Ok(cipher)
    }

    /// With a remote provider: the error of the call this caller queued
    /// behind, so a failing remote costs one retry budget, not one per waiter.
    fn failed_while_waiting<T>(&self, slot: &Slot<T>, waited: bool, seen: u64) -> Option<KeyError> {
        if !(self.remote && waited) {
            return None;
        }
        let e = slot.failed_since(seen)?;
        self.provider.note_coalesced();
        Some(e)
    }

    /// Records a failed provider call on its slot (remote providers only).
    fn failed<T>(&self, slot: &Slot<T>, e: KeyError) -> KeyError {
        if self.remote {
            slot.fail(&e);
        }
        e
    }

    /// Asks the remote provider to decrypt a blob and builds its cipher.
    fn decrypt_remote(&self, blob: &[u8], template: &str) -> Result<DekCipher, KeyError> {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        let dek = self.provider.decrypt_remote_data_key(blob, template)?;
        Ok(DekCipher::new(&dek))
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            provider_calls: self.provider_calls.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// Drops every cached DEK (for example after a CMK is disabled). Keys
    /// already handed out stay valid until their holders drop them.
    pub fn clear(&self) {
        self.sealing.clear();
        self.opening.clear();
        self.remote_opening.clear();
        self.derived.clear();
    }

    /// The key that seals deterministic fields of `context` under the
    /// primary version of the CMK named `key` (derived in the provider,
    /// cached until max age or the next key change).
    pub fn deterministic_key(&self, key: &str, context: &[u8]) -> Result<Arc<DetKey>, KeyError> {
        self.derived_key(
            super::derive::DerivedId::primary(key, context),
            key,
            None,
            context,
        )
    }

    /// The key that opens deterministic envelopes of `context` sealed under `cmk`.
    pub fn deterministic_opening_key(
        &self,
        cmk: &CmkRef,
        context: &[u8],
    ) -> Result<Arc<DetKey>, KeyError> {
        let name = super::KeyId::from_bytes(cmk.key_id).to_string();
        self.derived_key(
            super::derive::DerivedId::version(cmk, context),
            &name,
            Some(cmk.version),
            context,
        )
    }

    /// The primary version of the key with this id, as the provider knows it now.
    pub fn primary_version(&self, key_id: &[u8; 16]) -> Option<u32> {
        self.provider.primary_version(key_id)
    }

    fn derived_key(
        &self,
        id: super::derive::DerivedId,
        key: &str,
        version: Option<u32>,
        context: &[u8],
    ) -> Result<Arc<DetKey>, KeyError> {
        let now = self.clock.instant();
        let epoch = self.provider.epoch();
        if self.caching {
            if let Some(k) = self
                .derived
                .get(&id, |created, e| e == epoch && self.fresh(created, now))
            {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(k);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        let mut label = Vec::with_capacity(super::derive::DET_LABEL.len() + context.len());
        label.extend_from_slice(super::derive::DET_LABEL);
        label.extend_from_slice(context);
        let (cmk, dk) = self.provider.derive_key(key, version, &label)?;
        let k = Arc::new(DetKey::new(cmk, &dk));
        if self.caching {
            self.derived.put(id, Arc::clone(&k), now, epoch);
        }
        Ok(k)
    }

    /// Drops every cached DEK past `max_age` now. Expired DEKs are never
    /// used, but without calls they stay in memory until a later miss
    /// sweeps them; a periodic call bounds that.
    pub fn purge_expired(&self) {
        let now = self.clock.instant();
        self.sweep(now);
    }

    /// True while a DEK made at `created` may still be used at `now`.
    fn fresh(&self, created: Instant, now: Instant) -> bool {
        now.saturating_duration_since(created) < self.config.max_age
    }

    /// Counts a call served from the cache: a hit, or a miss if it waited
    /// for the provider call that made the entry.
    fn count_served(&self, coalesced: bool) {
        let counter = if coalesced { &self.misses } else { &self.hits };
        counter.fetch_add(1, Ordering::Relaxed);
        if coalesced {
            self.provider.note_coalesced();
        }
    }

    /// Adds to the eviction counter (skipping the atomic op for zero).
    fn count_evictions(&self, n: u64) {
        if n > 0 {
            self.evictions.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Sweeps expired entries out of both maps at most every half max age.
    fn maybe_sweep(&self, now: Instant) {
        {
            let mut last = self
                .last_sweep
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(t) = *last {
                if now.saturating_duration_since(t) < self.config.max_age / 2 {
                    return;
                }
            }
            *last = Some(now);
        }
        self.sweep(now);
    }

    /// Drops expired entries from both maps.
    fn sweep(&self, now: Instant) {
        let dropped = self.sealing.sweep(|e| !self.fresh(e.created(), now))
            + self.opening.sweep(|e| !self.fresh(e.created(), now));
        self.count_evictions(dropped);
    }

    /// Asks the provider for a fresh DEK and builds its sealing key; with
    /// a remote provider `partition` is the route's context template, whose
    /// canonical form the data key is bound to.
    fn generate(&self, key: &str, partition: &[u8]) -> Result<SealingKey, KeyError> {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        if self.remote {
            let template = crate::policy::canonical_context(&String::from_utf8_lossy(partition));
            let r = self.provider.generate_remote_data_key(key, &template)?;
            let field = crate::envelope::provider_field(&r.cmk.key_id, &template, &r.blob)
                .map_err(|_| {
                    KeyError::Unavailable(
                        "the provider returned a CiphertextBlob the envelope cannot carry, or \
                         the context template is longer than 256 bytes"
                            .into(),
                    )
                })?;
            return Ok(SealingKey {
                cmk: r.cmk,
                wrapped: WrappedDek([0; 40]),
                cipher: DekCipher::new(&r.key),
                remote: Some(field),
            });
        }
        let (cmk, wrapped, dek) = self.provider.generate_data_key(key)?;
        Ok(SealingKey {
            cmk,
            wrapped,
            cipher: DekCipher::new(&dek),
            remote: None,
        })
    }

    /// Asks the provider to unwrap a DEK and builds its cipher.
    fn unwrap(&self, cmk: &CmkRef, wrapped: &WrappedDek) -> Result<DekCipher, KeyError> {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        let dek = self.provider.unwrap_data_key(cmk, wrapped)?;
        Ok(DekCipher::new(&dek))
    }

    /// Callers waiting on the sealing slot of `(key, partition)`.
    #[cfg(test)]
    fn sealing_waiters(&self, key: &str, partition: &[u8]) -> usize {
        self.sealing.waiting(&seal_id(key, partition))
    }

    /// Callers waiting on the opening slot of `(cmk, wrapped)`.
    #[cfg(test)]
    fn opening_waiters(&self, cmk: &CmkRef, wrapped: &WrappedDek) -> usize {
        self.opening.waiting(&(*cmk, *wrapped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::envelope::{seal, Envelope};
    use crate::keys::RemoteDataKey;
    use crate::secret::DataKey;
    use base64::Engine as _;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Condvar;
    use std::thread;

    /// A provider that counts calls, can fail on demand, and can hold its
    /// calls at a gate until the test opens it.
    #[derive(Default)]
    struct FakeProvider {
        generated: AtomicU64,
        unwrapped: AtomicU64,
        fail: AtomicBool,
        deks: Mutex<HashMap<[u8; 40], [u8; 32]>>,
        gated: AtomicBool,
        gate: Mutex<(bool, usize)>,
        cv: Condvar,
        /// Acts as a remote KMS (blobs instead of wrapped keys).
        remote: bool,
        coalesced: AtomicU64,
    }

    impl FakeProvider {
        fn gated() -> Self {
            let p = FakeProvider::default();
            p.gated.store(true, Ordering::SeqCst);
            p
        }
        /// Blocks while the gate is closed; counts entries.
        fn pass_gate(&self) {
            if !self.gated.load(Ordering::SeqCst) {
                return;
            }
            let mut g = self.gate.lock().unwrap();
            g.1 += 1;
            self.cv.notify_all();
            while !g.0 {
                g = self.cv.wait(g).unwrap();
            }
        }
        /// Waits until `n` calls are inside the provider.
        fn wait_entered(&self, n: usize) {
            let mut g = self.gate.lock().unwrap();
            while g.1 < n {
                g = self.cv.wait(g).unwrap();
            }
        }
        fn open_gate(&self) {
            self.gate.lock().unwrap().0 = true;
            self.cv.notify_all();
        }
        fn generated(&self) -> u64 {
            self.generated.load(Ordering::SeqCst)
        }
        fn unwrapped(&self) -> u64 {
            self.unwrapped.load(Ordering::SeqCst)
        }
    }

    const CMK: CmkRef = CmkRef {
        key_id: [9; 16],
        version: 1,
    };

    impl KeyProvider for FakeProvider {
        fn generate_data_key(&self, _key: &str) -> Result<(CmkRef, WrappedDek, DataKey), KeyError> {
            let n = self.generated.fetch_add(1, Ordering::SeqCst) + 1;
            let fail = self.fail.load(Ordering::SeqCst);
            self.pass_gate();
            if fail {
                return Err(KeyError::CmkDisabled);
            }
            let mut dek = [0u8; 32];
            dek[..8].copy_from_slice(&n.to_le_bytes());
            let mut wrapped = [0xAA; 40];
            wrapped[..8].copy_from_slice(&n.to_le_bytes());
            self.deks.lock().unwrap().insert(wrapped, dek);
            Ok((CMK, WrappedDek(wrapped), DataKey::from_bytes(dek)))
        }

        fn unwrap_data_key(
            &self,
            _cmk: &CmkRef,
            wrapped: &WrappedDek,
        ) -> Result<DataKey, KeyError> {
            self.unwrapped.fetch_add(1, Ordering::SeqCst);
            let fail = self.fail.load(Ordering::SeqCst);
            self.pass_gate();
            if fail {
                return Err(KeyError::CmkDisabled);
            }
            let deks = self.deks.lock().unwrap();
            deks.get(&wrapped.0)
                .map(|d| DataKey::from_bytes(*d))
                .ok_or(KeyError::DoesNotOpen)
        }
    }

    impl FakeProvider {
        fn remote() -> Self {
            FakeProvider {
                remote: true,
                ..FakeProvider::default()
            }
        }
    }

    /// The remote side of the fake: a blob is the 40-byte "wrapped" value.
    fn remote_side(p: &FakeProvider) -> Result<RemoteDataKey, KeyError> {
        let (cmk, wrapped, key) = p.generate_data_key("k")?;
        Ok(RemoteDataKey {
            cmk,
            blob: wrapped.0.to_vec(),
            key,
        })
    }

    /// A remote-acting wrapper (is_remote is read when the cache is made);
    /// it records the context templates it is asked for, and decrypts a
    /// blob only with a template it made a data key for.
    struct Remote(Arc<FakeProvider>, Mutex<Vec<String>>);

    impl KeyProvider for Remote {
        fn generate_data_key(&self, _: &str) -> Result<(CmkRef, WrappedDek, DataKey), KeyError> {
            Err(KeyError::UnsupportedKeyUsage)
        }
        fn unwrap_data_key(&self, _: &CmkRef, _: &WrappedDek) -> Result<DataKey, KeyError> {
            Err(KeyError::CmkNotFound)
        }
        fn is_remote(&self) -> bool {
            self.0.remote
        }
        fn generate_remote_data_key(
            &self,
            _key: &str,
            template: &str,
        ) -> Result<RemoteDataKey, KeyError> {
            self.1.lock().unwrap().push(template.to_string());
            remote_side(&self.0)
        }
        fn decrypt_remote_data_key(
            &self,
            blob: &[u8],
            template: &str,
        ) -> Result<DataKey, KeyError> {
            if !self.1.lock().unwrap().iter().any(|t| t == template) {
                return Err(KeyError::DoesNotOpen);
            }
            let w: [u8; 40] = blob.try_into().map_err(|_| KeyError::DoesNotOpen)?;
            self.0.unwrap_data_key(&CMK, &WrappedDek(w))
        }
        fn note_coalesced(&self) {
            self.0.coalesced.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn remote_cache(p: &Arc<FakeProvider>) -> DataKeyCache {
        remote_cache_with(p, Default::default())
    }

    fn remote_cache_with(p: &Arc<FakeProvider>, templates: Mutex<Vec<String>>) -> DataKeyCache {
        DataKeyCache::with_system_clock(
            Arc::new(Remote(Arc::clone(p), templates)),
            CacheConfig::default(),
        )
    }

    #[test]
    fn a_remote_provider_is_called_once_per_data_key_and_never_when_warm() {
        let p = Arc::new(FakeProvider::remote());
        let cache = remote_cache(&p);
        assert!(cache.is_remote());
        let first = cache.sealing_key("k", b"t:{tenant}", 8).unwrap();
        assert!(first.remote.is_some());
        let mut texts = Vec::new();
        for i in 0..100 {
            let k = cache.sealing_key("k", b"t:{tenant}", 8).unwrap();
            assert!(Arc::ptr_eq(&k, &first));
            texts.push(
                seal(
                    &k,
                    format!("{i}").as_bytes(),
                    b"ctx",
                    &mut rand::thread_rng(),
                )
                .unwrap(),
            );
        }
        // opening what this node sealed needs no call either
        for t in &texts {
            let env = Envelope::parse(t).unwrap();
            assert!(t.starts_with("sg2."));
            let c = cache.envelope_key(&env).unwrap();
            env.open(&c, b"ctx").unwrap();
        }
        assert_eq!((p.generated(), p.unwrapped()), (1, 0));
        // each envelope names the route's canonical template and key
        let env = Envelope::parse(&texts[0]).unwrap();
        assert_eq!(env.provider_template(), Some("t:{}"));
        assert_eq!(env.cmk().key_id, CMK.key_id);
        // a node whose KMS knows no data key for that template: no cipher
        let stranger = remote_cache(&p);
        assert!(stranger.envelope_key(&env).is_err());
        // another node: one remote Decrypt for the blob (with the
        // template it was made for), then cached
        let other = remote_cache_with(&p, Mutex::new(vec!["t:{}".into()]));
        for t in &texts {
            let env = Envelope::parse(t).unwrap();
            let c = other.envelope_key(&env).unwrap();
            env.open(&c, b"ctx").unwrap();
        }
        assert_eq!(p.unwrapped(), 1);
        // a template changed in the header: the remote refuses it (no
        // cached cipher is found under another header either)
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&texts[0][4..])
            .unwrap();
        raw[18] = b'u';
        let env = Envelope::parse(&format!(
            "sg2.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw)
        ))
        .unwrap();
        assert_eq!(env.provider_template(), Some("u:{}"));
        assert!(other.envelope_key(&env).is_err());
        // per-record contexts share the route template's data key
        assert_eq!(cache.partition("t:acme", "t:{tenant}"), "t:{tenant}");
    }

    #[test]
    fn callers_queued_behind_a_failed_remote_call_get_its_error_without_calling_again() {
        let p = Arc::new(FakeProvider {
            gated: AtomicBool::new(true),
            fail: AtomicBool::new(true),
            ..FakeProvider::remote()
        });
        let cache = Arc::new(remote_cache(&p));
        let c1 = Arc::clone(&cache);
        let first = thread::spawn(move || c1.sealing_key("k", b"p", 1));
        p.wait_entered(1);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let c = Arc::clone(&cache);
                thread::spawn(move || c.sealing_key("k", b"p", 1))
            })
            .collect();
        while cache.sealing_waiters("k", b"p") < 3 {
            thread::yield_now();
        }
        p.open_gate();
        assert_eq!(first.join().unwrap().unwrap_err(), KeyError::CmkDisabled);
        for w in waiters {
            assert_eq!(w.join().unwrap().unwrap_err(), KeyError::CmkDisabled);
        }
        assert_eq!(p.generated(), 1, "one remote call for four callers");
        assert_eq!(p.coalesced.load(Ordering::SeqCst), 3);
        // the failure is not cached: the next caller tries again
        p.fail.store(false, Ordering::SeqCst);
        assert!(cache.sealing_key("k", b"p", 1).is_ok());
        assert_eq!(p.generated(), 2);
    }

    fn setup(config: CacheConfig) -> (Arc<FakeProvider>, Arc<ManualClock>, DataKeyCache) {
        setup_with(FakeProvider::default(), config)
    }

    fn setup_with(
        provider: FakeProvider,
        config: CacheConfig,
    ) -> (Arc<FakeProvider>, Arc<ManualClock>, DataKeyCache) {
        let provider = Arc::new(provider);
        let clock = Arc::new(ManualClock::default());
        let cache = DataKeyCache::new(
            Arc::clone(&provider) as Arc<dyn KeyProvider>,
            config,
            clock.clone(),
        );
        (provider, clock, cache)
    }

    fn wrapped_of(k: &SealingKey) -> [u8; 40] {
        k.wrapped.0
    }

    #[test]
    fn cache_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<DataKeyCache>();
    }

    #[test]
    fn default_limits_are_the_documented_ones() {
        let c = CacheConfig::default();
        assert_eq!(c.max_age, Duration::from_secs(300));
        assert_eq!(c.max_messages, 1 << 20);
        assert_eq!(c.max_bytes, 1 << 36);
        assert_eq!(c.capacity, 1024);
        assert!(c.enabled);
    }

    #[test]
    fn many_seals_make_one_provider_call() {
        let (p, _, cache) = setup(CacheConfig::default());
        let first = cache.sealing_key("alias/users", b"route", 16).unwrap();
        for _ in 0..99 {
            let k = cache.sealing_key("alias/users", b"route", 16).unwrap();
            assert!(Arc::ptr_eq(&k, &first));
        }
        assert_eq!(p.generated(), 1);
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.provider_calls), (99, 1, 1));
    }

    #[test]
    fn partitions_and_cmk_names_get_their_own_deks() {
        let (p, _, cache) = setup(CacheConfig::default());
        let a = cache.sealing_key("k1", b"a", 1).unwrap();
        let b = cache.sealing_key("k1", b"b", 1).unwrap();
        let c = cache.sealing_key("k2", b"a", 1).unwrap();
        // "k1" + "1a" and "k11" + "a" must not collide.
        let d = cache.sealing_key("k1", b"1a", 1).unwrap();
        let e = cache.sealing_key("k11", b"a", 1).unwrap();
        let all = [&a, &b, &c, &d, &e].map(|k| wrapped_of(k));
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "{i} {j}");
            }
        }
        assert_eq!(p.generated(), 5);
        assert!(Arc::ptr_eq(&a, &cache.sealing_key("k1", b"a", 1).unwrap()));
    }

    #[test]
    fn a_dek_expires_by_age() {
        let config = CacheConfig::default();
        let (p, clock, cache) = setup(config.clone());
        let first = cache.sealing_key("k", b"p", 8).unwrap();
        clock.advance(config.max_age - Duration::from_millis(1));
        assert!(Arc::ptr_eq(
            &first,
            &cache.sealing_key("k", b"p", 8).unwrap()
        ));
        clock.advance(Duration::from_millis(1));
        let second = cache.sealing_key("k", b"p", 8).unwrap();
        assert_ne!(wrapped_of(&first), wrapped_of(&second));
        assert_eq!(p.generated(), 2);
        // The retired sealing entry, and its copy in the opening cache
        // (swept by the miss).
        assert_eq!(cache.stats().evictions, 2);
    }

    #[test]
    fn a_dek_expires_by_messages() {
        let (p, _, cache) = setup(CacheConfig {
            max_messages: 3,
            ..CacheConfig::default()
        });
        let keys: Vec<_> = (0..7)
            .map(|_| wrapped_of(&cache.sealing_key("k", b"p", 1).unwrap()))
            .collect();
        assert_eq!(keys[0], keys[2]);
        assert_ne!(keys[2], keys[3]);
        assert_eq!(keys[3], keys[5]);
        assert_ne!(keys[5], keys[6]);
        assert_eq!(p.generated(), 3);
    }

    #[test]
    fn a_dek_expires_by_bytes() {
        let (p, _, cache) = setup(CacheConfig {
            max_bytes: 100,
            ..CacheConfig::default()
        });
        let a = wrapped_of(&cache.sealing_key("k", b"p", 60).unwrap());
        let b = wrapped_of(&cache.sealing_key("k", b"p", 40).unwrap());
        assert_eq!(a, b, "exactly max_bytes still fits");
        let c = wrapped_of(&cache.sealing_key("k", b"p", 1).unwrap());
        assert_ne!(b, c);
        assert_eq!(p.generated(), 2);
        // Larger than max_bytes: a fresh, uncached DEK each time; the cached
        // one is untouched.
        let big1 = wrapped_of(&cache.sealing_key("k", b"p", 101).unwrap());
        let big2 = wrapped_of(&cache.sealing_key("k", b"p", 101).unwrap());
        assert_ne!(big1, big2);
        assert_ne!(big1, c);
        assert_eq!(wrapped_of(&cache.sealing_key("k", b"p", 1).unwrap()), c);
        assert_eq!(p.generated(), 4);
    }

    #[test]
    fn a_batch_reserves_its_messages_and_bytes_at_once() {
        let (p, _, cache) = setup(CacheConfig {
            max_messages: 10,
            max_bytes: 100,
            ..CacheConfig::default()
        });
        let a = wrapped_of(
            &cache
                .sealing_key_for_batch("k", b"p", 4, 40)
                .unwrap()
                .unwrap(),
        );
        // 4 + 6 messages and 40 + 60 bytes: exactly at both limits, same DEK
        let b = wrapped_of(
            &cache
                .sealing_key_for_batch("k", b"p", 6, 60)
                .unwrap()
                .unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(p.generated(), 1);
        // the DEK is full: even one more value gets a fresh one
        let c = wrapped_of(&cache.sealing_key("k", b"p", 1).unwrap());
        assert_ne!(b, c);
        // a batch that does not fit what is left (1 + 10 > 10) takes a fresh DEK
        // and counts all of it there
        let d = wrapped_of(
            &cache
                .sealing_key_for_batch("k", b"p", 10, 5)
                .unwrap()
                .unwrap(),
        );
        assert_ne!(c, d);
        let e = wrapped_of(&cache.sealing_key("k", b"p", 1).unwrap());
        assert_ne!(d, e, "the batch used up the fresh DEK's messages");
        // bytes count too: with 1 byte used, 100 more do not fit
        let f = wrapped_of(
            &cache
                .sealing_key_for_batch("k", b"p", 1, 100)
                .unwrap()
                .unwrap(),
        );
        assert_ne!(e, f);
        assert_eq!(p.generated(), 5);
        // a batch no DEK can hold, or an empty one: the caller goes per value
        assert!(cache
            .sealing_key_for_batch("k", b"p", 11, 1)
            .unwrap()
            .is_none());
        assert!(cache
            .sealing_key_for_batch("k", b"p", 1, 101)
            .unwrap()
            .is_none());
        assert!(cache
            .sealing_key_for_batch("k", b"p", 0, 0)
            .unwrap()
            .is_none());
        assert_eq!(p.generated(), 5);
    }

    #[test]
    fn a_disabled_cache_never_batches() {
        let (p, _, cache) = setup(CacheConfig {
            enabled: false,
            ..CacheConfig::default()
        });
        assert!(cache
            .sealing_key_for_batch("k", b"p", 3, 30)
            .unwrap()
            .is_none());
        assert_eq!(p.generated(), 0);
    }

    #[test]
    fn opening_is_cached_by_wrapped_bytes() {
        let (p, clock, cache) = setup(CacheConfig::default());
        // Make two DEKs on the provider side only (not through the cache).
        let (cmk, w1, _) = p.generate_data_key("k").unwrap();
        let (_, w2, _) = p.generate_data_key("k").unwrap();
        let c1 = cache.opening_key(&cmk, &w1).unwrap();
        assert!(Arc::ptr_eq(&c1, &cache.opening_key(&cmk, &w1).unwrap()));
        assert_eq!(p.unwrapped(), 1);
        cache.opening_key(&cmk, &w2).unwrap();
        assert_eq!(p.unwrapped(), 2);
        // Same wrapped bytes under another CMK version are another entry.
        let other = CmkRef { version: 2, ..cmk };
        cache.opening_key(&other, &w1).unwrap();
        assert_eq!(p.unwrapped(), 3);
        clock.advance(CacheConfig::default().max_age);
        let again = cache.opening_key(&cmk, &w1).unwrap();
        assert!(!Arc::ptr_eq(&c1, &again));
        assert_eq!(p.unwrapped(), 4);
    }

    #[test]
    fn a_dek_made_for_sealing_opens_without_an_unwrap() {
        let (p, _, cache) = setup(CacheConfig::default());
        let sk = cache.sealing_key("k", b"p", 5).unwrap();
        let text = seal(&sk, b"\"hello\"", b"ctx", &mut rand::thread_rng()).unwrap();
        let env = Envelope::parse(&text).unwrap();
        let cipher = cache.opening_key(&env.cmk(), env.wrapped()).unwrap();
        assert_eq!(env.open(&cipher, b"ctx").unwrap().json(), b"\"hello\"");
        assert_eq!(p.unwrapped(), 0);
        assert_eq!(p.generated(), 1);
    }

    #[test]
    fn sealed_values_open_through_a_fresh_cache() {
        let (p, _, cache) = setup(CacheConfig::default());
        let sk = cache.sealing_key("k", b"p", 5).unwrap();
        let text = seal(&sk, b"[1,2]", b"ctx", &mut rand::thread_rng()).unwrap();
        // Another node: same provider, empty cache.
        let (_, _, other) = setup(CacheConfig::default());
        let other = DataKeyCache::new(
            Arc::clone(&p) as Arc<dyn KeyProvider>,
            other.config().clone(),
            Arc::new(SystemClock),
        );
        let env = Envelope::parse(&text).unwrap();
        let cipher = other.opening_key(&env.cmk(), env.wrapped()).unwrap();
        assert_eq!(env.open(&cipher, b"ctx").unwrap().json(), b"[1,2]");
        assert_eq!(p.unwrapped(), 1);
    }

    #[test]
    fn provider_errors_are_not_cached() {
        let (p, _, cache) = setup(CacheConfig::default());
        p.fail.store(true, Ordering::SeqCst);
        assert_eq!(
            cache.sealing_key("k", b"p", 1).unwrap_err(),
            KeyError::CmkDisabled
        );
        p.fail.store(false, Ordering::SeqCst);
        assert!(cache.sealing_key("k", b"p", 1).is_ok());
        assert_eq!(p.generated(), 2);

        let unknown = WrappedDek([0x55; 40]);
        assert_eq!(
            cache.opening_key(&CMK, &unknown).unwrap_err(),
            KeyError::DoesNotOpen
        );
        assert_eq!(
            cache.opening_key(&CMK, &unknown).unwrap_err(),
            KeyError::DoesNotOpen
        );
        assert_eq!(p.unwrapped(), 2);
    }

    #[test]
    fn disabled_cache_calls_the_provider_every_time() {
        let (p, _, cache) = setup(CacheConfig {
            enabled: false,
            ..CacheConfig::default()
        });
        let a = cache.sealing_key("k", b"p", 1).unwrap();
        let b = cache.sealing_key("k", b"p", 1).unwrap();
        assert_ne!(wrapped_of(&a), wrapped_of(&b));
        cache.opening_key(&a.cmk, &a.wrapped).unwrap();
        cache.opening_key(&a.cmk, &a.wrapped).unwrap();
        assert_eq!((p.generated(), p.unwrapped()), (2, 2));
        assert_eq!(cache.stats().hits, 0);
        assert_eq!(cache.stats().provider_calls, 4);
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let (p, _, cache) = setup(CacheConfig {
            capacity: 0,
            ..CacheConfig::default()
        });
        cache.sealing_key("k", b"p", 1).unwrap();
        cache.sealing_key("k", b"p", 1).unwrap();
        assert_eq!(p.generated(), 2);
    }

    #[test]
    fn capacity_bounds_the_cache() {
        let (p, _, cache) = setup(CacheConfig {
            capacity: 2,
            ..CacheConfig::default()
        });
        let a = cache.sealing_key("k", b"a", 1).unwrap();
        cache.sealing_key("k", b"b", 1).unwrap();
        cache.sealing_key("k", b"c", 1).unwrap(); // pushes out "a"
                                                  // "a" from the sealing cache, and its copy from the opening cache.
        assert_eq!(cache.stats().evictions, 2);
        let a2 = cache.sealing_key("k", b"a", 1).unwrap();
        assert_ne!(wrapped_of(&a), wrapped_of(&a2));
        assert_eq!(p.generated(), 4);
    }

    #[test]
    fn expired_and_cleared_deks_are_dropped() {
        let (_, clock, cache) = setup(CacheConfig::default());
        let k = cache.sealing_key("k", b"p", 1).unwrap();
        // Held by us, the sealing cache (and its copy in the opening cache).
        assert_eq!(Arc::strong_count(&k), 2);
        clock.advance(Duration::from_secs(301));
        cache.purge_expired();
        assert_eq!(Arc::strong_count(&k), 1, "cache let go of the expired DEK");
        assert_eq!(cache.stats().evictions, 2, "sealing and opening entries");

        let k = cache.sealing_key("k", b"p", 1).unwrap();
        let o = cache.opening_key(&k.cmk, &k.wrapped).unwrap();
        assert_eq!((Arc::strong_count(&k), Arc::strong_count(&o)), (2, 2));
        cache.clear();
        assert_eq!((Arc::strong_count(&k), Arc::strong_count(&o)), (1, 1));
    }

    #[test]
    fn a_miss_sweeps_other_expired_entries() {
        let (_, clock, cache) = setup(CacheConfig::default());
        let old = cache.sealing_key("k", b"old", 1).unwrap();
        clock.advance(Duration::from_secs(301));
        cache.sealing_key("k", b"new", 1).unwrap();
        assert_eq!(Arc::strong_count(&old), 1);
    }

    #[test]
    fn a_burst_of_concurrent_seals_makes_one_provider_call() {
        const N: usize = 8;
        let (p, _, cache) = setup_with(FakeProvider::gated(), CacheConfig::default());
        let cache = Arc::new(cache);
        let handles: Vec<_> = (0..N)
            .map(|_| {
                let c = Arc::clone(&cache);
                thread::spawn(move || c.sealing_key("k", b"p", 4).unwrap())
            })
            .collect();
        // One call is in the provider; wait until all others queue behind it.
        p.wait_entered(1);
        while cache.sealing_waiters("k", b"p") < N - 1 {
            thread::yield_now();
        }
        p.open_gate();
        let keys: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(p.generated(), 1);
        assert!(keys.iter().all(|k| Arc::ptr_eq(k, &keys[0])));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.provider_calls), (0, N as u64, 1));
    }

    #[test]
    fn a_burst_of_concurrent_opens_makes_one_provider_call() {
        const N: usize = 8;
        let provider = FakeProvider::default();
        let (cmk, wrapped, _) = provider.generate_data_key("k").unwrap();
        provider.gated.store(true, Ordering::SeqCst);
        let (p, _, cache) = setup_with(provider, CacheConfig::default());
        let cache = Arc::new(cache);
        let handles: Vec<_> = (0..N)
            .map(|_| {
                let c = Arc::clone(&cache);
                thread::spawn(move || c.opening_key(&cmk, &wrapped).unwrap())
            })
            .collect();
        p.wait_entered(1);
        while cache.opening_waiters(&cmk, &wrapped) < N - 1 {
            thread::yield_now();
        }
        p.open_gate();
        let ciphers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(p.unwrapped(), 1);
        assert!(ciphers.iter().all(|c| Arc::ptr_eq(c, &ciphers[0])));
    }

    #[test]
    fn after_a_failed_call_a_waiter_tries_again() {
        let (p, _, cache) = setup_with(FakeProvider::gated(), CacheConfig::default());
        let cache = Arc::new(cache);
        p.fail.store(true, Ordering::SeqCst);
        let c1 = Arc::clone(&cache);
        let first = thread::spawn(move || c1.sealing_key("k", b"p", 1));
        p.wait_entered(1);
        let c2 = Arc::clone(&cache);
        let second = thread::spawn(move || c2.sealing_key("k", b"p", 1));
        while cache.sealing_waiters("k", b"p") < 1 {
            thread::yield_now();
        }
        // The first call (decided to fail on entry) returns its error; the
        // waiter then finds nothing cached and makes its own call, which the
        // provider, no longer failing, serves.
        {
            let mut g = p.gate.lock().unwrap();
            g.0 = true;
            p.fail.store(false, Ordering::SeqCst);
            p.cv.notify_all();
        }
        assert_eq!(first.join().unwrap().unwrap_err(), KeyError::CmkDisabled);
        let key = second.join().unwrap().unwrap();
        assert_eq!(p.generated(), 2);
        // And the waiter's key is now the cached one.
        assert!(Arc::ptr_eq(&key, &cache.sealing_key("k", b"p", 1).unwrap()));
        assert_eq!(p.generated(), 2);
    }
}
