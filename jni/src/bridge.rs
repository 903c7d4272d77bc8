//! The JNI exports of `io.sluice.spark.NativeBridge`. [`guarded`] is the one place that
//! turns native errors and panics into Java exceptions (`io.sluice.spark.SluiceException`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use jni::objects::{JByteArray, JClass, JIntArray, JLongArray, JString};
use jni::sys::{jbyteArray, jint, jlong, jlongArray};
use jni::JNIEnv;
use sluice_client::MapAttempt;

use crate::error::BridgeError;
use crate::handles::Handles;
use crate::native::{Fetch, MapWriter, Session, SessionConfig};
use crate::records::java_layout;

// Sessions are shared by every task of a JVM: the table holds an `Arc` that calls clone
// out, so no call holds the table's lock while it talks to a server.
static SESSIONS: LazyLock<Handles<Arc<Session>>> = LazyLock::new(|| Handles::new("session"));
static WRITERS: LazyLock<Handles<MapWriter>> = LazyLock::new(|| Handles::new("map writer"));
static FETCHES: LazyLock<Handles<Fetch>> = LazyLock::new(|| Handles::new("fetch"));

const EXCEPTION: &str = "io/sluice/spark/SluiceException";

/// Runs `f`; an error or a panic becomes a pending Java exception and `fallback` is
/// returned (Java sees the exception, not the value).
fn guarded<T>(
    env: &mut JNIEnv,
    fallback: T,
    f: impl FnOnce(&mut JNIEnv) -> Result<T, BridgeError>,
) -> T {
    let result = catch_unwind(AssertUnwindSafe(|| f(env))).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(BridgeError::Panic(msg))
    });
    match result {
        Ok(v) => v,
        Err(e) => {
            // A JNI call that failed may have left its own exception pending: keep it.
            if !env.exception_check().unwrap_or(false) {
                let _ = env.throw_new(EXCEPTION, e.to_string());
            }
            fallback
        }
    }
}

fn session(handle: jlong) -> Result<Arc<Session>, BridgeError> {
    SESSIONS.with(handle, |s| Ok(s.clone()))
}

fn jni_err(e: jni::errors::Error) -> BridgeError {
    BridgeError::InvalidArgument(format!("JNI: {e}"))
}

fn string(env: &mut JNIEnv, s: &JString) -> Result<String, BridgeError> {
    Ok(env.get_string(s).map_err(jni_err)?.into())
}

fn index(name: &str, v: jint) -> Result<u32, BridgeError> {
    u32::try_from(v).map_err(|_| BridgeError::InvalidArgument(format!("{name} {v} is negative")))
}

fn millis(name: &str, v: jlong) -> Result<std::time::Duration, BridgeError> {
    u64::try_from(v)
        .map(std::time::Duration::from_millis)
        .map_err(|_| BridgeError::InvalidArgument(format!("{name} {v} ms is negative")))
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_openSession(
    mut env: JNIEnv,
    _class: JClass,
    servers: JString,
    token_file: JString,
    trust_file: JString,
    app: JString,
    secret: JString,
    replication: jint,
    idle_timeout_ms: jlong,
    connect_timeout_ms: jlong,
) -> jlong {
    guarded(&mut env, 0, |env| {
        let config = SessionConfig {
            servers: string(env, &servers)?
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            token_file: PathBuf::from(string(env, &token_file)?),
            trust_file: PathBuf::from(string(env, &trust_file)?),
            app: string(env, &app)?,
            secret: string(env, &secret)?,
            replication: index("replication", replication)?,
            idle_timeout: millis("idle timeout", idle_timeout_ms)?,
            connect_timeout: millis("connect timeout", connect_timeout_ms)?,
        };
        Ok(SESSIONS.insert(Arc::new(Session::open(config)?)))
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_closeSession(
    mut env: JNIEnv,
    _class: JClass,
    session_handle: jlong,
) {
    guarded(&mut env, (), |_| {
        SESSIONS.remove(session_handle);
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_openWriter(
    mut env: JNIEnv,
    _class: JClass,
    session_handle: jlong,
    server: jint,
    shuffle_id: jint,
    num_partitions: jint,
    map_id: jlong,
    map_index: jint,
    attempt: jint,
) -> jlong {
    guarded(&mut env, 0, |_| {
        let map = MapAttempt {
            map_id: u64::try_from(map_id)
                .map_err(|_| BridgeError::InvalidArgument(format!("map id {map_id}")))?,
            map_index: index("map index", map_index)?,
            attempt: index("attempt", attempt)?,
        };
        let shuffle_id = index("shuffle id", shuffle_id)?;
        let num_partitions = index("partition count", num_partitions)?;
        let writer = session(session_handle)?.push(server, shuffle_id, num_partitions, map)?;
        Ok(WRITERS.insert(writer))
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_write(
    mut env: JNIEnv,
    _class: JClass,
    writer: jlong,
    count: jint,
    pids: JIntArray,
    ends: JIntArray,
    data: JByteArray,
    data_len: jint,
) {
    guarded(&mut env, (), |env| {
        let count = index("record count", count)? as usize;
        let len = index("data length", data_len)? as usize;
        WRITERS.with(writer, |w| {
            // Straight from Java's arrays into the writer's buffers: one copy each.
            w.write_with(count, len, |p, e, d| {
                env.get_int_array_region(&pids, 0, p).map_err(jni_err)?;
                env.get_int_array_region(&ends, 0, e).map_err(jni_err)?;
                env.get_byte_array_region(&data, 0, d).map_err(jni_err)
            })
        })
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_trim(
    mut env: JNIEnv,
    _class: JClass,
    writer: jlong,
) {
    // A writer already gone (committed, or its commit failed) has nothing to free.
    guarded(&mut env, (), |_| {
        let _ = WRITERS.with(writer, |w| {
            w.trim();
            Ok(())
        });
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_commit(
    mut env: JNIEnv,
    _class: JClass,
    writer: jlong,
) -> jlongArray {
    guarded(&mut env, std::ptr::null_mut(), |env| {
        let committed = WRITERS.with(writer, |w| w.commit());
        WRITERS.remove(writer);
        let committed = committed?;
        // The stored bytes of each partition, then the second copy's server (-1: none).
        let mut out = committed.partition_bytes;
        out.push(committed.replica.map_or(-1, i64::from));
        let array = env.new_long_array(out.len() as i32).map_err(jni_err)?;
        env.set_long_array_region(&array, 0, &out)
            .map_err(jni_err)?;
        Ok(array.into_raw())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_abort(
    mut env: JNIEnv,
    _class: JClass,
    writer: jlong,
) {
    // Dropping an uncommitted push abandons it: the server never serves its rows.
    guarded(&mut env, (), |_| {
        WRITERS.remove(writer);
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_openFetch(
    mut env: JNIEnv,
    _class: JClass,
    session_handle: jlong,
    server: jint,
    replica: jint,
    shuffle_id: jint,
    start_partition: jint,
    end_partition: jint,
    map_ids: JLongArray,
) -> jlong {
    guarded(&mut env, 0, |env| {
        let n = env.get_array_length(&map_ids).map_err(jni_err)? as usize;
        let mut ids = vec![0i64; n];
        env.get_long_array_region(&map_ids, 0, &mut ids)
            .map_err(jni_err)?;
        let ids = ids
            .into_iter()
            .map(|m| {
                u64::try_from(m).map_err(|_| BridgeError::InvalidArgument(format!("map id {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let partitions =
            index("start partition", start_partition)?..index("end partition", end_partition)?;
        let shuffle_id = index("shuffle id", shuffle_id)?;
        let replica = (replica >= 0).then_some(replica);
        let fetch = session(session_handle)?.fetch(server, replica, shuffle_id, partitions, ids)?;
        Ok(FETCHES.insert(fetch))
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_nextBatch(
    mut env: JNIEnv,
    _class: JClass,
    fetch: jlong,
) -> jbyteArray {
    guarded(&mut env, std::ptr::null_mut(), |env| {
        FETCHES.with(fetch, |f| {
            let Some(batch) = f.next_batch()? else {
                return Ok(std::ptr::null_mut());
            };
            let body = java_layout(&batch, &mut f.header)?;
            let len = i32::try_from(f.header.len() + body.len()).map_err(|_| {
                BridgeError::Data(format!("a batch of {} bytes", f.header.len() + body.len()))
            })?;
            // Header and record bytes go straight into the array Java receives.
            let array = env.new_byte_array(len).map_err(jni_err)?;
            let header: &[i8] = bytemuck::cast_slice(&f.header);
            env.set_byte_array_region(&array, 0, header)
                .map_err(jni_err)?;
            env.set_byte_array_region(&array, header.len() as i32, bytemuck::cast_slice(body))
                .map_err(jni_err)?;
            Ok(array.into_raw())
        })
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_closeFetch(
    mut env: JNIEnv,
    _class: JClass,
    fetch: jlong,
) {
    guarded(&mut env, (), |_| {
        FETCHES.remove(fetch);
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_deleteShuffle(
    mut env: JNIEnv,
    _class: JClass,
    session_handle: jlong,
    shuffle_id: jint,
) {
    guarded(&mut env, (), |_| {
        let shuffle_id = index("shuffle id", shuffle_id)?;
        session(session_handle)?.delete_shuffle(shuffle_id)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sluice_spark_NativeBridge_deleteApp(
    mut env: JNIEnv,
    _class: JClass,
    session_handle: jlong,
) {
    guarded(&mut env, (), |_| session(session_handle)?.delete_app())
}
