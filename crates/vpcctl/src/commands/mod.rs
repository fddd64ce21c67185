pub mod crd;
pub mod health;
pub mod install_cni;
pub mod max_pods;
pub mod status;
pub mod validate;
