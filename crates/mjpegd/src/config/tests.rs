//! The configuration checks, each with the key path it names.

use std::time::Duration;

use super::*;

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let e = parse("[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\nfpss = 3\n")
        .expect_err("unknown key")
        .to_string();
    assert!(e.contains("cameras[0]") && e.contains("fpss"), "{e}");
    let e = parse("[server]\nlisten = 8080\n")
        .expect_err("wrong type")
        .to_string();
    assert!(e.contains("server.listen"), "{e}");
}

#[test]
fn bad_values_name_the_key_and_the_accepted_range() {
    let file = parse(
        "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n\
         [[cameras]]\nname = \"b\"\nsource = \"testpattern\"\n\
         [[cameras]]\nname = \"c\"\nsource = \"testpattern\"\nfps = 500\n",
    )
    .expect("parses");
    let e = check_cameras(&file.cameras).expect_err("fps out of range");
    assert_eq!(e.key, "cameras[2].fps");
    assert!(e.message.contains("from 0.01 to 240"), "{e}");

    let dup = parse(
        "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n\
         [[cameras]]\nname = \"a\"\nsource = \"images\"\n",
    )
    .expect("parses");
    let e = check_cameras(&dup.cameras).expect_err("duplicate");
    assert_eq!(e.key, "cameras[1].name");

    for (field, value, key) in [
        ("rotate", "45", "cameras[0].rotate"),
        ("flip", "\"diagonal\"", "cameras[0].flip"),
        ("size", "\"big\"", "cameras[0].size"),
        ("stream_size", "\"640\"", "cameras[0].stream_size"),
        ("quality", "0", "cameras[0].quality"),
        ("name", "\"a b\"", "cameras[0].name"),
    ] {
        let text =
            format!("[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n{field} = {value}\n")
                .replacen(
                    "name = \"a\"\n",
                    if field == "name" {
                        ""
                    } else {
                        "name = \"a\"\n"
                    },
                    1,
                );
        let file = parse(&text).expect("parses");
        let e = check_cameras(&file.cameras).expect_err(field);
        assert_eq!(e.key, key, "{e}");
    }
}

#[test]
fn stream_size_and_drop_same_frames() {
    let file = parse(
        "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\nstream_size = \"640x360\"\ndrop_same_frames = true\n\
         [[cameras]]\nname = \"b\"\nsource = \"testpattern\"\n",
    )
    .expect("parses");
    let cams = check_cameras(&file.cameras).expect("valid");
    assert_eq!(cams[0].stream_size, Some((640, 360)));
    assert!(cams[0].drop_same_frames);
    assert_eq!(cams[1].stream_size, None);
    assert!(!cams[1].drop_same_frames);
    let e = parse("[[cameras]]\nname = \"a\"\nsource = \"images\"\ndrop_same_frames = 1\n")
        .expect_err("not a boolean")
        .to_string();
    assert!(e.contains("drop_same_frames"), "{e}");
}

#[test]
fn server_section_is_checked() {
    let s = ServerSection {
        listen: Some(OneOrMany::One("nowhere".into())),
        ..ServerSection::default()
    };
    assert_eq!(
        check_server(&s, "server.").expect_err("bad").key,
        "server.listen"
    );
    let s = ServerSection {
        max_viewers: Some(0),
        ..ServerSection::default()
    };
    assert_eq!(
        check_server(&s, "server.").expect_err("bad").key,
        "server.max_viewers"
    );
}

#[test]
fn record_sections_are_checked_with_their_key_paths() {
    let file = parse(
        "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n\
         [cameras.record]\ndir = \"/tmp/r\"\nmax_bytes = \"2G\"\nmax_age = \"7d\"\nmode = \"off\"\n",
    )
    .expect("parses");
    let r = check_recordings(&file.cameras).expect("valid");
    assert_eq!(r[0].0, "a");
    assert_eq!(r[0].1.max_bytes, 2 << 30);
    assert_eq!(r[0].1.max_age, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(r[0].1.mode, crate::record::Mode::Off);
    assert_eq!(r[0].1.segment, Duration::from_secs(60));
    for (field, value) in [
        ("max_bytes", "\"lots\""),
        ("max_bytes", "1000"),
        ("max_age", "\"7w\""),
        ("max_age", "0"),
        ("mode", "\"sometimes\""),
        ("segment_seconds", "0"),
        ("segment_seconds", "3601"),
        ("fps", "0"),
        ("fps", "241"),
        ("pre_capture", "30.5"),
        ("pre_capture", "-1"),
        ("post_capture", "301"),
        ("mode", "\"motion\""),
    ] {
        let text = format!(
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n[cameras.record]\ndir = \"/tmp/r\"\n{field} = {value}\n"
        );
        let e = check_recordings(&parse(&text).expect("parses").cameras).expect_err(field);
        assert_eq!(e.key, format!("cameras[0].record.{field}"), "{e}");
    }
    let e = parse(
        "[[cameras]]\nname = \"a\"\nsource = \"x\"\n[cameras.record]\ndir = \"/r\"\nmax_size = 3\n",
    )
    .expect_err("unknown key")
    .to_string();
    assert!(e.contains("record") && e.contains("max_size"), "{e}");
    assert_eq!(
        parse_bytes(&NumberOrText::Text("1.5GiB".into())),
        Ok(3 << 29)
    );
    assert_eq!(parse_age(&NumberOrText::Text("90s".into())), Ok(90));
}

#[test]
fn motion_mode_takes_its_margins_and_fps_with_a_motion_section() {
    let file = parse(
        "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n[cameras.motion]\n\
         [cameras.record]\ndir = \"/tmp/r\"\nmode = \"motion\"\nfps = 1\npre_capture = 30\n\
         post_capture = 0.5\n",
    )
    .expect("parses");
    let r = &check_recordings(&file.cameras).expect("valid")[0].1;
    assert_eq!(r.mode, crate::record::Mode::Motion);
    assert_eq!(r.fps, Some(1.0));
    assert_eq!(r.pre_capture, crate::record::MAX_PRE_CAPTURE);
    assert_eq!(r.post_capture, Duration::from_millis(500));
    let file = parse(
        "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n[cameras.record]\ndir = \"/tmp/r\"\n",
    )
    .expect("parses");
    let r = &check_recordings(&file.cameras).expect("valid")[0].1;
    assert_eq!(
        (r.mode, r.fps, r.pre_capture, r.post_capture),
        (
            crate::record::Mode::Continuous,
            None,
            crate::record::DEFAULT_CAPTURE_MARGIN,
            crate::record::DEFAULT_CAPTURE_MARGIN
        )
    );
}

#[test]
fn encode_workers_is_bounded() {
    let with = |n| ServerSection {
        encode_workers: Some(n),
        ..ServerSection::default()
    };
    let at_limit = check_server(&with(crate::pool::MAX_WORKERS as u64), "server.");
    assert_eq!(
        at_limit.expect("at the limit").encode_workers,
        crate::pool::MAX_WORKERS
    );
    let past = check_server(&with(crate::pool::MAX_WORKERS as u64 + 1), "server.");
    assert_eq!(
        past.expect_err("past the limit").key,
        "server.encode_workers"
    );
    let default = check_server(&ServerSection::default(), "server.").expect("default");
    assert_eq!(default.encode_workers, 0);
}

#[test]
fn server_names_are_host_names_without_ports_and_bounded() {
    let check = |names: &str| {
        let file = parse(&format!("[server]\nnames = {names}\n")).expect("parses");
        check_server(&file.server, "server.")
    };
    let ok = check("[\"Cam.Example.\", \"192.0.2.7\", \"[2001:db8::1]\"]").expect("valid names");
    assert_eq!(ok.names, ["cam.example", "192.0.2.7", "2001:db8::1"]);
    for (bad, says) in [
        ("[\"cam.example:8080\"]", "without a port"),
        ("[\"bad_name\"]", "not a host name"),
        ("[\"-x.example\"]", "not a host name"),
        ("[\"\"]", "not a host name"),
    ] {
        let e = check(bad).expect_err(bad);
        assert_eq!(e.key, "server.names", "{bad}");
        assert!(e.message.contains(says), "{bad}: {e}");
    }
    let many: Vec<String> = (0..=MAX_NAMES)
        .map(|i| format!("\"n{i}.example\""))
        .collect();
    let e = check(&format!("[{}]", many.join(","))).expect_err("too many");
    assert!(e.message.contains("at most 64"), "{e}");
}

#[test]
fn auth_login_is_form_or_basic() {
    let login = |toml: &str| login_form(&parse(toml).expect("parses").auth);
    assert!(login("").expect("default"), "the form by default");
    assert!(login("[auth]\nlogin = \"form\"\n").expect("form"));
    assert!(!login("[auth]\nlogin = \"basic\"\n").expect("basic"));
    let e = login("[auth]\nlogin = \"digest\"\n").expect_err("unknown");
    assert_eq!(e.key, "auth.login");
    assert!(
        e.message.contains("\"form\"") && e.message.contains("\"basic\""),
        "{e}"
    );
}
