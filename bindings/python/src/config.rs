//! `Store(...)` arguments to a core [`coatcheck::Config`]. Types are checked here (a wrong type
//! is a `TypeError`); ranges are the core's to judge, except where Python's numbers are wider
//! than the core's (negative counts, NaN or infinite seconds).

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::error::{invalid_argument, invalid_config, type_error};

/// Seconds given as an `int` or a `float` (not a `bool`), as a positive duration.
fn seconds(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Result<Duration, String>> {
    if value.is_instance_of::<PyBool>()
        || !(value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>())
    {
        return Err(type_error(format!(
            "{what} must be a number of seconds (int or float), not {}",
            value.get_type().name()?
        )));
    }
    let Ok(secs) = value.extract::<f64>() else {
        return Ok(Err(format!("{what} is out of range"))); // an int too large for a float
    };
    if secs.is_nan() || secs <= 0.0 {
        return Ok(Err(format!("{what} must be greater than zero")));
    }
    Ok(Duration::try_from_secs_f64(secs).map_err(|_| format!("{what} is out of range")))
}

/// A TTL argument: `None`, or seconds as `int`/`float`.
pub fn ttl(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => match seconds(v, "ttl")? {
            Ok(d) => Ok(Some(d)),
            Err(_) => Err(invalid_argument(
                "ttl must be a positive, finite number of seconds",
            )),
        },
    }
}

fn config_seconds(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Duration> {
    seconds(value, what)?.map_err(invalid_config)
}

/// A count (`max_sessions`, ...): an `int`; the core rejects zero.
fn count(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<usize>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    require_int(value, what)?;
    value
        .extract::<usize>()
        .map(Some)
        .map_err(|_| invalid_config(format!("{what} must be a positive integer")))
}

/// A `TypeError` unless `value` is an `int`: a `bool` is an int subclass, but no count,
/// version or size.
pub fn require_int(value: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(type_error(format!(
            "{what} must be an int, not {}",
            value.get_type().name()?
        )));
    }
    Ok(())
}

/// One secret: `str` (its UTF-8 bytes) or `bytes`.
fn secret(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    Err(type_error(format!(
        "a secret must be str or bytes, not {}",
        value.get_type().name()?
    )))
}

/// `secret`: one `str`/`bytes`, or a list or tuple of them (the first signs, all verify).
fn secrets(value: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    let items: Vec<Bound<'_, PyAny>> = if let Ok(list) = value.cast::<PyList>() {
        list.iter().collect()
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        tuple.iter().collect()
    } else {
        return Ok(vec![secret(value)?]);
    };
    if items.is_empty() {
        return Err(invalid_config("at least one secret is required"));
    }
    items.iter().map(secret).collect()
}

/// The keyword arguments of `Store(...)`, borrowed from Python.
pub struct StoreArgs<'a, 'py> {
    pub secret: &'a Bound<'py, PyAny>,
    pub idle_timeout: &'a Bound<'py, PyAny>,
    pub absolute_timeout: Option<&'a Bound<'py, PyAny>>,
    pub max_sessions: Option<&'a Bound<'py, PyAny>>,
    pub max_bytes: Option<&'a Bound<'py, PyAny>>,
    pub max_session_bytes: Option<&'a Bound<'py, PyAny>>,
    pub shards: Option<&'a Bound<'py, PyAny>>,
    pub sweep_interval: Option<&'a Bound<'py, PyAny>>,
    pub redis_url: Option<&'a Bound<'py, PyAny>>,
    pub redis_key_prefix: Option<&'a Bound<'py, PyAny>>,
    pub redis_timeout: Option<&'a Bound<'py, PyAny>>,
    pub redis_when_down: Option<&'a Bound<'py, PyAny>>,
    pub redis_strict: Option<&'a Bound<'py, PyAny>>,
    pub persist_path: Option<&'a Bound<'py, PyAny>>,
    pub persist_fsync: Option<&'a Bound<'py, PyAny>>,
}

/// An optional `str` argument.
fn text(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<String>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let Ok(s) = value.cast::<PyString>() else {
        return Err(type_error(format!(
            "{what} must be a str, not {}",
            value.get_type().name()?
        )));
    };
    Ok(Some(s.to_cow()?.into_owned()))
}

impl StoreArgs<'_, '_> {
    /// The core configuration; the core runs the sweeper thread and keeps stores working
    /// across `fork()`.
    pub fn to_config(&self) -> PyResult<coatcheck::Config> {
        let mut config = coatcheck::Config::default();
        config.secrets = secrets(self.secret)?;
        config.idle_timeout = config_seconds(self.idle_timeout, "idle_timeout")?;
        if let Some(v) = self.absolute_timeout.filter(|v| !v.is_none()) {
            config.absolute_timeout = Some(config_seconds(v, "absolute_timeout")?);
        }
        if let Some(v) = self.sweep_interval.filter(|v| !v.is_none()) {
            config.sweep_interval = config_seconds(v, "sweep_interval")?;
        }
        config.max_sessions = count(self.max_sessions, "max_sessions")?;
        config.max_bytes = count(self.max_bytes, "max_bytes")?;
        if let Some(n) = count(self.max_session_bytes, "max_session_bytes")? {
            config.max_session_bytes = n;
        }
        config.shards = count(self.shards, "shards")?;
        config.redis_url = text(self.redis_url, "redis_url")?;
        if let Some(prefix) = text(self.redis_key_prefix, "redis_key_prefix")? {
            config.redis_key_prefix = prefix;
        }
        if let Some(v) = self.redis_timeout.filter(|v| !v.is_none()) {
            config.redis_timeout = config_seconds(v, "redis_timeout")?;
        }
        if let Some(policy) = text(self.redis_when_down, "redis_when_down")? {
            config.redis_when_down = match policy.as_str() {
                "serve_local" => coatcheck::WhenRedisDown::ServeLocal,
                "fail" => coatcheck::WhenRedisDown::Fail,
                _ => {
                    return Err(invalid_config(
                        "redis_when_down must be \"serve_local\" or \"fail\"",
                    ));
                }
            };
        }
        if let Some(v) = self.redis_strict.filter(|v| !v.is_none()) {
            let Ok(strict) = v.cast::<PyBool>() else {
                return Err(type_error(format!(
                    "redis_strict must be a bool, not {}",
                    v.get_type().name()?
                )));
            };
            config.redis_strict = strict.is_true();
        }
        if let Some(v) = self.persist_path.filter(|v| !v.is_none()) {
            // str or os.PathLike, as `open()` takes.
            let Ok(path) = v.extract::<std::path::PathBuf>() else {
                return Err(type_error(format!(
                    "persist_path must be a str or os.PathLike, not {}",
                    v.get_type().name()?
                )));
            };
            config.persist_path = Some(path);
        }
        if let Some(policy) = text(self.persist_fsync, "persist_fsync")? {
            config.persist_fsync = match policy.as_str() {
                "never" => coatcheck::Fsync::Never,
                "interval" => coatcheck::Fsync::Interval,
                "always" => coatcheck::Fsync::Always,
                _ => {
                    return Err(invalid_config(
                        "persist_fsync must be \"never\", \"interval\" or \"always\"",
                    ));
                }
            };
        }
        config.validate().map_err(crate::error::Error)?;
        Ok(config)
    }
}
