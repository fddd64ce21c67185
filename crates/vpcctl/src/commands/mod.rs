pub mod max_pods;
