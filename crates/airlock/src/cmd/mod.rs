//! One module per subcommand.

pub mod approvals;
pub mod audit;
pub mod budget;
pub mod config;
pub mod db;
pub mod demo;
pub mod gateway;
pub mod init;
pub mod keys;
pub mod mcp;
pub mod policy;
pub mod proxy;
pub mod run;
pub mod scan;
pub mod secret;
pub mod serve;
pub mod version;
