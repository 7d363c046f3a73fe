//! Attach and tty through a monitor running real containers under runc.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Spec, fixture, spec};
use sdc_docker_monitor::{OutputStream, Streams, attach, attach_with, read_frame, resize, spawn};

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn a_line_written_to_an_attached_cat_comes_back_framed_on_stdout() {
    let Some(fx) = fixture(Spec {
        open_stdin: true,
        ..spec(&["cat"])
    }) else {
        return;
    };
    spawn(&fx.config).unwrap_or_else(|e| panic!("spawn: {e}"));
    let streams = Streams {
        stdin: true,
        stdout: true,
        stderr: true,
    };
    let mut socket =
        attach_with(fx.state_dir(), streams, true).unwrap_or_else(|e| panic!("attach: {e}"));
    socket
        .set_read_timeout(Some(EXIT_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    socket
        .write_all(b"hello monitor\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let frame = read_frame(&mut socket).unwrap_or_else(|e| panic!("read_frame: {e}"));
    let frame = frame.unwrap_or_else(|| panic!("the monitor closed the attach socket"));
    assert_eq!(frame.stream, OutputStream::Stdout);
    assert_eq!(frame.data, b"hello monitor\n");

    // Ending our input closes cat's stdin (stdin once): cat exits 0 and the
    // monitor closes the connection.
    socket
        .shutdown(std::net::Shutdown::Write)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(read_frame(&mut socket), Ok(None)));
    let exit = fx.wait_for_exit(EXIT_TIMEOUT).exit;
    assert_eq!(exit.map(|e| e.exit_code), Some(0));
    let log = std::fs::read_to_string(fx.log_path()).unwrap_or_default();
    assert!(log.contains("\"hello monitor\\n\""), "{log}");
}

#[test]
fn a_tty_container_sends_everything_on_stream_1_and_sees_resizes() {
    let Some(fx) = fixture(Spec {
        tty: true,
        ..spec(&["sh", "-c", "echo to-err >&2; sleep 1; stty size"])
    }) else {
        return;
    };
    spawn(&fx.config).unwrap_or_else(|e| panic!("spawn: {e}"));
    let streams = Streams {
        stdin: false,
        stdout: true,
        stderr: true,
    };
    let mut socket = attach(fx.state_dir(), streams).unwrap_or_else(|e| panic!("attach: {e}"));
    socket
        .set_read_timeout(Some(EXIT_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    resize(fx.state_dir(), 40, 100).unwrap_or_else(|e| panic!("resize: {e}"));

    let mut output = Vec::new();
    while let Some(frame) = read_frame(&mut socket).unwrap_or_else(|e| panic!("read_frame: {e}")) {
        assert_eq!(frame.stream, OutputStream::Stdout);
        output.extend_from_slice(&frame.data);
    }
    let output = String::from_utf8_lossy(&output);
    assert!(output.contains("40 100"), "{output:?}");

    let exit = fx.wait_for_exit(EXIT_TIMEOUT).exit;
    assert_eq!(exit.map(|e| e.exit_code), Some(0));
    let log = std::fs::read_to_string(fx.log_path()).unwrap_or_default();
    assert!(log.contains("40 100"), "{log}");
    assert!(!log.contains("\"stderr\""), "{log}");
}

#[test]
fn resizing_a_container_whose_monitor_is_gone_fails() {
    let Some(fx) = fixture(spec(&["true"])) else {
        return;
    };
    spawn(&fx.config).unwrap_or_else(|e| panic!("spawn: {e}"));
    fx.wait_for_exit(EXIT_TIMEOUT);
    assert!(resize(fx.state_dir(), 10, 10).is_err());
    let streams = Streams {
        stdout: true,
        ..Streams::default()
    };
    assert!(attach(fx.state_dir(), streams).is_err());
}

#[test]
fn a_tty_container_under_a_state_dir_too_long_for_a_socket_path_can_be_attached() {
    let Some(mut fx) = fixture(Spec {
        tty: true,
        open_stdin: true,
        ..spec(&["sh", "-c", "read line; echo got-$line"])
    }) else {
        return;
    };
    fx.config.state_dir = fx.dir.path().join("d".repeat(120));
    spawn(&fx.config).unwrap_or_else(|e| panic!("spawn: {e}"));
    let streams = Streams {
        stdin: true,
        stdout: true,
        stderr: false,
    };
    let mut socket = attach(fx.state_dir(), streams).unwrap_or_else(|e| panic!("attach: {e}"));
    socket
        .set_read_timeout(Some(EXIT_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    socket.write_all(b"abc\n").unwrap_or_else(|e| panic!("{e}"));
    let mut output = Vec::new();
    while let Some(frame) = read_frame(&mut socket).unwrap_or_else(|e| panic!("read_frame: {e}")) {
        output.extend_from_slice(&frame.data);
    }
    let output = String::from_utf8_lossy(&output);
    assert!(output.contains("got-abc"), "{output:?}");
    let exit = fx.wait_for_exit(EXIT_TIMEOUT).exit;
    assert_eq!(exit.map(|e| e.exit_code), Some(0));
}
