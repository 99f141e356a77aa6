//! The remote tier against a real, private `redis-server` per test (started on a free port,
//! nothing saved to disk, killed when the test ends). `redis-server` must be installed: these
//! tests fail, rather than pass silently, when it is not (`.ci/run` installs it).

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faasflow_remote::{MAX_OBJECT_LEN, ObjectKey, RemoteError, RemoteStore};

const LIMIT: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `f` under a time limit, so a hang fails the test instead of stalling the suite.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test ran past its time limit")
}

/// A port nothing listens on (at the time of asking).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private redis-server, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed: install it (Debian: apt-get install redis-server; .ci/run does this) \
                 to run the remote-tier tests"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let mut redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis.answers_ping() {
            if let Some(status) = redis.child.try_wait().unwrap() {
                panic!("redis-server on port {port} exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// How many keys the server holds.
    async fn dbsize(&self) -> usize {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn store(redis: &Redis) -> RemoteStore {
    RemoteStore::connect(&redis.url(), TIMEOUT).await.unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_small_empty_and_100_mib() {
    let redis = Redis::start();
    bounded(async {
        let store = RemoteStore::connect(&redis.url(), Duration::from_secs(20))
            .await
            .unwrap();
        for (name, len) in [("small", 13), ("empty", 0), ("big", 100 << 20)] {
            let key = ObjectKey::new("wf", 1, 1, name);
            let bytes = pattern(len);
            store.put(&key, &bytes).await.unwrap();
            let back = store.get(&key).await.unwrap().expect("object is stored");
            assert_eq!(back.len(), len, "{name}");
            assert!(back == bytes, "{name} came back different");
        }
        assert_eq!(store.get(&ObjectKey::new("wf", 1, 1, "absent")).await.unwrap(), None);
        assert_eq!(store.delete_invocation("wf", 1, 1).await.unwrap(), 3);
        assert_eq!(redis.dbsize().await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_over_512_mib_are_refused_before_sending() {
    let redis = Redis::start();
    bounded(async {
        let store = store(&redis).await;
        // Zeroed pages are not touched, so this costs no real memory.
        let huge = vec![0u8; MAX_OBJECT_LEN + 1];
        let key = ObjectKey::new("wf", 1, 1, "huge");
        let err = store.put(&key, &huge).await.unwrap_err();
        assert!(
            matches!(err, RemoteError::TooLarge { len, .. } if len == MAX_OBJECT_LEN + 1),
            "{err}"
        );
        assert!(err.to_string().contains("ff:wf:1:1:huge"), "{err}");
        assert_eq!(redis.dbsize().await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_leaves_no_key_even_after_a_failed_invocation() {
    let redis = Redis::start();
    bounded(async {
        let store = store(&redis).await;
        // A successful invocation: written, replaced, read, cleaned up.
        for i in 0..5 {
            store
                .put(&ObjectKey::new("ok", 3, 10, format!("o{i}")), b"data")
                .await
                .unwrap();
        }
        store.put(&ObjectKey::new("ok", 3, 10, "o0"), b"again").await.unwrap();
        assert_eq!(store.keys_of("ok", 3, 10).await.unwrap().len(), 5);
        assert_eq!(store.delete_invocation("ok", 3, 10).await.unwrap(), 5);
        assert_eq!(redis.dbsize().await, 0);

        // A failed invocation: a task writes some objects and then dies midway.
        let task_store = store.clone();
        let task = tokio::spawn(async move {
            for i in 0..3 {
                task_store
                    .put(&ObjectKey::new("bad", 1, 11, format!("o{i}")), &pattern(1000))
                    .await
                    .unwrap();
            }
            panic!("function crashed");
        });
        assert!(task.await.unwrap_err().is_panic());
        // One more the invocation started and abandoned (the task is aborted mid-flight).
        let abandoned_store = store.clone();
        let abandoned = tokio::spawn(async move {
            for i in 0.. {
                abandoned_store
                    .put(&ObjectKey::new("bad", 1, 11, format!("late{i}")), b"x")
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        abandoned.abort();
        let _ = abandoned.await;
        let written = store.keys_of("bad", 1, 11).await.unwrap().len();
        assert!(written >= 3, "{written}");
        assert!(redis.dbsize().await > 0);
        assert_eq!(store.delete_invocation("bad", 1, 11).await.unwrap(), written);
        assert_eq!(redis.dbsize().await, 0, "keys left behind after cleanup");
        // Cleaning up again, or an invocation that stored nothing, is harmless.
        assert_eq!(store.delete_invocation("bad", 1, 11).await.unwrap(), 0);
        assert_eq!(store.delete_invocation("never", 1, 1).await.unwrap(), 0);
        assert_eq!(redis.dbsize().await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_versions_and_invocations_are_isolated() {
    let redis = Redis::start();
    bounded(async {
        let store = store(&redis).await;
        // Names chosen to collide if ':' were not escaped: "a:1" v2 inv3 "x" vs "a" v1 inv2 "3:x".
        let keys = [
            ObjectKey::new("a:1", 2, 3, "x"),
            ObjectKey::new("a", 1, 2, "3:x"),
            ObjectKey::new("a", 1, 2, "x"),
            ObjectKey::new("a", 2, 2, "x"),
            ObjectKey::new("a", 1, 3, "x"),
            ObjectKey::new("a*", 1, 2, "x"),
        ];
        for (i, key) in keys.iter().enumerate() {
            store.put(key, format!("value {i}").as_bytes()).await.unwrap();
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(
                store.get(key).await.unwrap().unwrap(),
                format!("value {i}").as_bytes(),
                "{key}"
            );
        }
        assert_eq!(
            redis.dbsize().await,
            keys.len() * 2 - 1,
            "one key per object, one index per invocation"
        );
        assert_eq!(
            store.keys_of("a", 1, 2).await.unwrap(),
            vec!["ff:a:1:2:3%3Ax", "ff:a:1:2:x"]
        );

        // Removing one invocation leaves every other one whole.
        assert_eq!(store.delete_invocation("a", 1, 2).await.unwrap(), 2);
        assert_eq!(store.get(&keys[1]).await.unwrap(), None);
        assert_eq!(store.get(&keys[2]).await.unwrap(), None);
        for key in [&keys[0], &keys[3], &keys[4], &keys[5]] {
            assert!(
                store.get(key).await.unwrap().is_some(),
                "{key} was removed with another invocation"
            );
        }
        for key in [&keys[0], &keys[3], &keys[4], &keys[5]] {
            assert_eq!(
                store
                    .delete_invocation(&key.workflow, key.version, key.invocation)
                    .await
                    .unwrap(),
                1
            );
        }
        assert_eq!(redis.dbsize().await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_reported_quickly_and_clearly() {
    bounded(async {
        let url = format!("redis://127.0.0.1:{}", free_port());
        let started = Instant::now();
        let err = RemoteStore::connect(&url, TIMEOUT).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
        assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot reach Redis at {url}: connection refused")),
            "{msg}"
        );
        assert!(msg.contains("start redis-server or run without --redis"), "{msg}");

        let err = RemoteStore::connect("http://nowhere", TIMEOUT).await.unwrap_err();
        assert!(matches!(err, RemoteError::InvalidUrl { .. }), "{err:?}");
        assert!(err.to_string().contains("http://nowhere"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_in_use_gives_errors_not_hangs() {
    let mut redis = Redis::start();
    bounded(async {
        let store = store(&redis).await;
        let key = ObjectKey::new("wf", 1, 1, "o");
        store.put(&key, b"before").await.unwrap();
        redis.kill();
        for _ in 0..3 {
            let started = Instant::now();
            let err = store.put(&key, b"after").await.unwrap_err();
            assert!(
                started.elapsed() < TIMEOUT + Duration::from_secs(1),
                "put took {:?}",
                started.elapsed()
            );
            assert!(err.to_string().contains(&redis.url()), "{err}");
            let started = Instant::now();
            let err = store.get(&key).await.unwrap_err();
            assert!(
                started.elapsed() < TIMEOUT + Duration::from_secs(1),
                "get took {:?}",
                started.elapsed()
            );
            assert!(
                matches!(err, RemoteError::Failed { .. } | RemoteError::Timeout { .. }),
                "{err:?}"
            );
            let started = Instant::now();
            store.delete_invocation("wf", 1, 1).await.unwrap_err();
            assert!(
                started.elapsed() < TIMEOUT + Duration::from_secs(1),
                "delete took {:?}",
                started.elapsed()
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_their_index_expire_as_a_backstop() {
    bounded(async {
        let redis = Redis::start();
        let s = store(&redis).await;
        let key = ObjectKey::new("wf", 1, 9, "a.out");
        s.put(&key, b"x").await.unwrap();
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for k in [key.redis_key(), "ffidx:wf:1:9".to_owned()] {
            let ttl: i64 = redis::cmd("PTTL").arg(&k).query_async(&mut conn).await.unwrap();
            let max = faasflow_remote::KEY_TTL.as_millis() as i64;
            assert!(ttl > max - 60_000 && ttl <= max, "{k}: PTTL {ttl}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_object_is_deleted_with_its_index_entry() {
    bounded(async {
        let redis = Redis::start();
        let s = store(&redis).await;
        let (a, b) = (ObjectKey::new("wf", 1, 5, "a"), ObjectKey::new("wf", 1, 5, "b"));
        s.put(&a, b"1").await.unwrap();
        s.put(&b, b"2").await.unwrap();
        s.delete(&a).await.unwrap();
        s.delete(&a).await.unwrap();
        assert_eq!(s.get(&a).await.unwrap(), None);
        assert_eq!(s.keys_of("wf", 1, 5).await.unwrap(), vec![b.redis_key()]);
        s.delete(&b).await.unwrap();
        assert_eq!(redis.dbsize().await, 0, "an empty index is no key");
    })
    .await;
}
