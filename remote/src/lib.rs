//! The remote tier: objects kept in Redis, for edges the plan marks remote, spills when a
//! quota is full, and MasterSP.
//!
//! Keys are namespaced by workflow, version and invocation ([`ObjectKey`] renders as
//! `ff:{workflow}:{version}:{invocation}:{object}`). Workflow and object names are
//! percent-escaped (every byte outside `[A-Za-z0-9._-]` becomes `%XX`), so no name can contain
//! the `:` separator, a glob character or whitespace, and two different keys never render the
//! same. Each invocation has an index, the Redis set `ffidx:{workflow}:{version}:{invocation}`
//! of its object keys; [`RemoteStore::put`] writes the object and adds it to the index in one
//! `MULTI`/`EXEC`, so no object key ever exists outside its index, and
//! [`RemoteStore::delete_invocation`] removes the index and every key it names in one Lua
//! script (atomic with respect to concurrent puts). Call it when an invocation ends, whether
//! it succeeded or failed.
//!
//! Values are stored whole, one Redis string per object; objects larger than
//! [`MAX_OBJECT_LEN`] (Redis's 512 MiB string limit) are refused with
//! [`RemoteError::TooLarge`] before anything is sent.
//!
//! Every operation is bounded by the timeout given to [`RemoteStore::connect`], and `GET`s and
//! `SET`s of objects by [`DATA_TIMEOUT_FACTOR`] times it (they share one connection, so a
//! small object may wait behind large ones, and a large one takes its time): an unreachable
//! or vanished Redis gives an error that names its URL, never a hang. The connection is a
//! [`ConnectionManager`]: one multiplexed connection, re-established in the background after
//! it breaks.
//!
//! Every key and index expires [`KEY_TTL`] after its last write: a backstop for an
//! invocation whose cleaner died before deleting it (the keys of a live invocation are never
//! that old).
//!
//! What it does not do: chunk objects above 512 MiB, or decide what goes remote.
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};

/// How long a key lives after its last write when nobody deletes it.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// How many times the store's timeout a `GET` or `SET` of an object may take.
pub const DATA_TIMEOUT_FACTOR: u32 = 10;

/// The largest object the remote tier stores: Redis's limit on a string value (512 MiB).
pub const MAX_OBJECT_LEN: usize = 512 * 1024 * 1024;

/// Deletes an invocation's index (`KEYS[1]`) and every key it names; returns how many of
/// those keys existed.
const DELETE_INVOCATION: &str = r"
local keys = redis.call('SMEMBERS', KEYS[1])
local removed = 0
for i = 1, #keys, 1000 do
    removed = removed + redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys)))
end
redis.call('DEL', KEYS[1])
return removed
";

/// Where one object lives in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// The workflow's name (any string; escaped when rendered).
    pub workflow: String,
    /// The workflow's version.
    pub version: u64,
    /// The invocation the object belongs to.
    pub invocation: u64,
    /// The object's name within the invocation (any string; escaped when rendered).
    pub object: String,
}

impl ObjectKey {
    /// The key of `object` in `workflow`'s `version`, invocation `invocation`.
    pub fn new(workflow: impl Into<String>, version: u64, invocation: u64, object: impl Into<String>) -> Self {
        Self {
            workflow: workflow.into(),
            version,
            invocation,
            object: object.into(),
        }
    }

    /// The Redis key: `ff:{workflow}:{version}:{invocation}:{object}`, names escaped.
    pub fn redis_key(&self) -> String {
        format!(
            "{}:{}",
            invocation_prefix(&self.workflow, self.version, self.invocation),
            escape(&self.object)
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redis_key())
    }
}

/// `ff:{workflow}:{version}:{invocation}`: what every object key of the invocation starts with.
fn invocation_prefix(workflow: &str, version: u64, invocation: u64) -> String {
    format!("ff:{}:{version}:{invocation}", escape(workflow))
}

/// The Redis set naming every object key of the invocation.
fn index_key(workflow: &str, version: u64, invocation: u64) -> String {
    format!("ffidx:{}:{version}:{invocation}", escape(workflow))
}

/// Percent-escapes every byte outside `[A-Za-z0-9._-]`, `%` included, so the result is
/// injective and never holds `:`, glob characters or whitespace.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why the remote tier failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// No connection to Redis could be made when the store was created.
    #[error(
        "cannot reach Redis at {url}: {reason}; start redis-server or run without --redis (objects then stay on this worker)"
    )]
    Unreachable { url: String, reason: String },
    /// An operation did not finish within the store's timeout.
    #[error("Redis at {url} did not answer {op} on {key} within {timeout:?}")]
    Timeout {
        url: String,
        op: &'static str,
        key: String,
        timeout: Duration,
    },
    /// An operation failed: the connection broke, Redis refused it, or its answer was unexpected.
    #[error("Redis at {url} failed {op} on {key}: {reason}")]
    Failed {
        url: String,
        op: &'static str,
        key: String,
        reason: String,
    },
    /// The object is larger than Redis stores in one value.
    #[error("object {key} is {len} bytes; the remote tier stores at most {max} bytes per object")]
    TooLarge { key: String, len: usize, max: usize },
    /// A file to store could not be read whole.
    #[error("cannot read {} to store it: {cause}", path.display())]
    File { path: std::path::PathBuf, cause: String },
}

/// `url` as it may be shown: a password in it (`redis://user:secret@host`, `redis://:secret@host`)
/// becomes `***`. Every message and log line that names a Redis URL shows it this way.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{user}@{}", &rest[at + 1..])
}

/// Objects in Redis, addressed by [`ObjectKey`]. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct RemoteStore {
    url: String,
    timeout: Duration,
    conn: ConnectionManager,
}

impl fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStore")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteStore {
    /// Connects to the Redis at `url` (`redis://host:port[/db]`). `timeout` bounds the
    /// connection and, later, every operation. Fails with [`RemoteError::Unreachable`] when
    /// Redis does not answer within it.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, RemoteError> {
        let client = Client::open(url).map_err(|e| RemoteError::InvalidUrl {
            url: redact_url(url),
            reason: describe(&e),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout * DATA_TIMEOUT_FACTOR))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(timeout);
        let unreachable = |reason: String| RemoteError::Unreachable {
            url: redact_url(url),
            reason,
        };
        let mut conn = match tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, config)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(unreachable(describe(&e))),
            Err(_) => return Err(unreachable(format!("no answer within {timeout:?}"))),
        };
        let ping = tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        match ping {
            Ok(Ok(_)) => Ok(Self {
                url: redact_url(url),
                timeout,
                conn,
            }),
            Ok(Err(e)) => Err(unreachable(describe(&e))),
            Err(_) => Err(unreachable(format!("no answer to PING within {timeout:?}"))),
        }
    }

    /// The URL this store was connected to, without its password ([`redact_url`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stores `bytes` under `key` (replacing any earlier value) and records the key in its
    /// invocation's index, atomically.
    pub async fn put(&self, key: &ObjectKey, bytes: &[u8]) -> Result<(), RemoteError> {
        let rkey = key.redis_key();
        if bytes.len() > MAX_OBJECT_LEN {
            return Err(RemoteError::TooLarge {
                key: rkey,
                len: bytes.len(),
                max: MAX_OBJECT_LEN,
            });
        }
        let index = index_key(&key.workflow, key.version, key.invocation);
        let ttl = u64::try_from(KEY_TTL.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&rkey)
            .arg(bytes)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("SADD")
            .arg(&index)
            .arg(&rkey)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(ttl)
            .ignore();
        let mut conn = self.conn.clone();
        self.bounded_for(
            self.timeout * DATA_TIMEOUT_FACTOR,
            "SET",
            &rkey,
            pipe.query_async::<()>(&mut conn),
        )
        .await
    }

    /// Stores the `len` bytes of the file at `path` under `key`, as [`RemoteStore::put`]
    /// does, reading and sending them in pieces of `piece` bytes (the file is never held
    /// whole): the first piece is `SET`, the others `APPEND`ed. Readers must not read the
    /// key before this returns; on an error, what was stored is deleted.
    pub async fn put_file(
        &self,
        key: &ObjectKey,
        path: &std::path::Path,
        len: u64,
        piece: usize,
    ) -> Result<(), RemoteError> {
        use tokio::io::AsyncReadExt as _;
        let rkey = key.redis_key();
        if len > MAX_OBJECT_LEN as u64 {
            return Err(RemoteError::TooLarge {
                key: rkey,
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max: MAX_OBJECT_LEN,
            });
        }
        let unreadable = |e: std::io::Error| RemoteError::File {
            path: path.to_owned(),
            cause: e.to_string(),
        };
        let mut file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let mut buf = vec![0u8; piece.max(1)];
        let mut sent = 0u64;
        let result = async {
            loop {
                let mut n = 0;
                while n < buf.len() {
                    match file.read(&mut buf[n..]).await.map_err(unreadable)? {
                        0 => break,
                        k => n += k,
                    }
                }
                if sent == 0 {
                    self.put(key, &buf[..n]).await?;
                } else if n > 0 {
                    let mut conn = self.conn.clone();
                    self.bounded_for(
                        self.timeout * DATA_TIMEOUT_FACTOR,
                        "APPEND",
                        &rkey,
                        redis::cmd("APPEND")
                            .arg(&rkey)
                            .arg(&buf[..n])
                            .query_async::<u64>(&mut conn),
                    )
                    .await?;
                }
                sent += n as u64;
                if n < buf.len() {
                    break;
                }
            }
            if sent == len {
                Ok(())
            } else {
                Err(RemoteError::File {
                    path: path.to_owned(),
                    cause: format!("it has {sent} bytes, not the {len} expected"),
                })
            }
        }
        .await;
        if result.is_err() && sent > 0 {
            let _ = self.delete(key).await;
        }
        result
    }

    /// The bytes stored under `key`, or `None` when there are none.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, RemoteError> {
        let rkey = key.redis_key();
        let mut conn = self.conn.clone();
        self.bounded_for(
            self.timeout * DATA_TIMEOUT_FACTOR,
            "GET",
            &rkey,
            redis::cmd("GET").arg(&rkey).query_async::<Option<Vec<u8>>>(&mut conn),
        )
        .await
    }

    /// Bytes `start..end` of the object under `key` (fewer past its end; `None` when there is
    /// no object).
    pub async fn get_range(&self, key: &ObjectKey, start: u64, end: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        let rkey = key.redis_key();
        if end <= start {
            return Ok(Some(Vec::new()));
        }
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS")
            .arg(&rkey)
            .cmd("GETRANGE")
            .arg(&rkey)
            .arg(start)
            .arg(end - 1);
        let mut conn = self.conn.clone();
        let (exists, bytes): (bool, Vec<u8>) = self
            .bounded_for(
                self.timeout * DATA_TIMEOUT_FACTOR,
                "GETRANGE",
                &rkey,
                pipe.query_async(&mut conn),
            )
            .await?;
        Ok(exists.then_some(bytes))
    }

    /// Deletes one object (and its entry in its invocation's index). Deleting an object that
    /// is not there succeeds.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), RemoteError> {
        let rkey = key.redis_key();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(&rkey)
            .ignore()
            .cmd("SREM")
            .arg(index_key(&key.workflow, key.version, key.invocation))
            .arg(&rkey)
            .ignore();
        let mut conn = self.conn.clone();
        self.bounded("DEL", &rkey, pipe.query_async::<()>(&mut conn)).await
    }

    /// Deletes every object of the invocation and its index; returns how many objects were
    /// removed. Deleting an invocation with no objects removes nothing and succeeds.
    pub async fn delete_invocation(&self, workflow: &str, version: u64, invocation: u64) -> Result<usize, RemoteError> {
        let index = index_key(workflow, version, invocation);
        let mut conn = self.conn.clone();
        let mut eval = redis::cmd("EVAL");
        eval.arg(DELETE_INVOCATION).arg(1).arg(&index);
        self.bounded("delete_invocation", &index, eval.query_async::<usize>(&mut conn))
            .await
    }

    /// The Redis keys of the invocation's objects, sorted (from its index).
    pub async fn keys_of(&self, workflow: &str, version: u64, invocation: u64) -> Result<Vec<String>, RemoteError> {
        let index = index_key(workflow, version, invocation);
        let mut conn = self.conn.clone();
        let mut keys = self
            .bounded(
                "SMEMBERS",
                &index,
                redis::cmd("SMEMBERS").arg(&index).query_async::<Vec<String>>(&mut conn),
            )
            .await?;
        keys.sort();
        Ok(keys)
    }

    /// Runs `fut` within the store's timeout, naming `op` and `key` in its error.
    async fn bounded<T>(
        &self,
        op: &'static str,
        key: &str,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RemoteError> {
        self.bounded_for(self.timeout, op, key, fut).await
    }

    /// Runs `fut` within `limit`, naming `op` and `key` in its error.
    async fn bounded_for<T>(
        &self,
        limit: Duration,
        op: &'static str,
        key: &str,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RemoteError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_timeout() => Err(RemoteError::Timeout {
                url: self.url.clone(),
                op,
                key: key.to_owned(),
                timeout: limit,
            }),
            Ok(Err(e)) => Err(RemoteError::Failed {
                url: self.url.clone(),
                op,
                key: key.to_owned(),
                reason: describe(&e),
            }),
            Err(_) => Err(RemoteError::Timeout {
                url: self.url.clone(),
                op,
                key: key.to_owned(),
                timeout: limit,
            }),
        }
    }
}

/// A short description of a Redis error: "connection refused" rather than the crate's debug
/// form.
fn describe(e: &RedisError) -> String {
    if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_timeout() {
        "connection timed out".to_owned()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_urls() {
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact_url("redis://:s3cret@host:6379/2"), "redis://:***@host:6379/2");
        assert_eq!(redact_url("redis://app:s3cret@host"), "redis://app:***@host");
        assert_eq!(redact_url("redis://token@host"), "redis://***@host");
        assert_eq!(redact_url("rediss://u:p@w@host/0"), "rediss://u:***@host/0");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("redis://host/a@b"), "redis://host/a@b");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_named_without_its_password() {
        let e = RemoteStore::connect("redis://app:s3cret@127.0.0.1:1", Duration::from_millis(300))
            .await
            .expect_err("nothing listens on port 1");
        let text = e.to_string();
        assert!(
            text.contains("redis://app:***@127.0.0.1:1") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn names_are_escaped_so_keys_cannot_collide() {
        assert_eq!(ObjectKey::new("wf", 1, 7, "out").redis_key(), "ff:wf:1:7:out");
        let a = ObjectKey::new("a:1", 2, 3, "x");
        let b = ObjectKey::new("a", 1, 2, "3:x");
        assert_ne!(a.redis_key(), b.redis_key());
        assert_eq!(a.redis_key(), "ff:a%3A1:2:3:x");
        assert_eq!(b.redis_key(), "ff:a:1:2:3%3Ax");
        assert_eq!(escape("%3A"), "%253A");
        assert_eq!(escape("a b*?[]\n"), "a%20b%2A%3F%5B%5D%0A");
        assert_eq!(escape("é"), "%C3%A9");
    }
}
