//! `sdc-docker-monitor`: the per-container monitor, started by sdc-docker's
//! zone driver through `sdc_docker_monitor::spawn`. All of it lives in the
//! library; see `sdc_docker_monitor::supervisor`.

fn main() -> std::process::ExitCode {
    sdc_docker_monitor::supervisor::main(std::env::args_os().skip(1))
}
