pub mod proxy;
pub mod redis;
