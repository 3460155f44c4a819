//! Integration tests: the command-line conventions every command shares. One exit-code table
//! (the binary's, docs/usage.md's and `--help`'s agree, each command lists its own codes), JSON
//! errors in `--json` mode, which environment variable names which configuration, and what exit
//! code 3 means against a session's `partial` state.

use std::collections::BTreeMap;

use crate::check_damage::{flip_byte, largest_data_chunk};
use crate::common::*;

/// The binary's own table, included as it is: the tests compare the outputs with it.
#[path = "../../src/bin/rsbackup/exit.rs"]
#[allow(dead_code)]
mod table;

fn usage_md() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/usage.md")).unwrap()
}

/// The rows `| code | name | ... |` of the markdown table after `heading`: code → second cell.
fn doc_rows(doc: &str, heading: &str) -> BTreeMap<u8, String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("{heading:?} not in usage.md"));
    doc[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((cells.get(1)?.parse().ok()?, cells.get(2)?.to_string()))
        })
        .collect()
}

/// The `  N  name  meaning` lines of the `Exit codes` block at the end of a `--help`.
fn help_rows(help: &str) -> BTreeMap<u8, String> {
    let start = help
        .rfind("Exit codes (")
        .unwrap_or_else(|| panic!("no exit codes in:\n{help}"));
    help[start..]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.parse().ok()?, words.next()?.to_string()))
        })
        .collect()
}

fn help_of(words: &[&str]) -> String {
    let mut args: Vec<&str> = words.to_vec();
    args.push("--help");
    let run = rsbackup(&args);
    run.ok();
    run.stdout_str()
}

#[test]
fn one_exit_code_table_in_the_binary_usage_md_and_help() {
    let table: BTreeMap<u8, String> = table::TABLE
        .iter()
        .map(|c| (c.code, c.name.to_string()))
        .collect();
    assert_eq!(
        table.keys().copied().collect::<Vec<_>>(),
        (0..=22).collect::<Vec<_>>(),
        "every number from 0 to 22 has one entry"
    );
    let mut names: Vec<&String> = table.values().collect();
    names.dedup();
    assert_eq!(names.len(), table.len(), "names are unique");
    assert_eq!(
        doc_rows(&usage_md(), "## Exit codes"),
        table,
        "docs/usage.md \"Exit codes\" against the binary's table"
    );
    assert_eq!(
        help_rows(&help_of(&[])),
        table,
        "rsbackup --help against the table"
    );
}

#[test]
fn each_commands_help_lists_the_codes_it_can_return() {
    for (name, _) in table::COMMANDS {
        let want: BTreeMap<u8, String> = table::codes_of(name)
            .into_iter()
            .map(|c| (c, table::code(c).unwrap().name.to_string()))
            .collect();
        assert!(want.contains_key(&0) && want.contains_key(&2), "{name}");
        assert_eq!(help_rows(&help_of(&[name])), want, "rsbackup {name} --help");
    }
    // Subcommands of a command group list the group's codes.
    for words in [["key", "list"], ["repair", "index"], ["config", "check"]] {
        let want: Vec<u8> = table::codes_of(words[0]);
        let got: Vec<u8> = help_rows(&help_of(&words)).into_keys().collect();
        assert_eq!(got, want, "rsbackup {} --help", words.join(" "));
    }
    // `run`'s table in usage.md lists exactly the codes `run --help` does.
    let run_doc: Vec<u8> = doc_rows(&usage_md(), "Exit codes of `run`")
        .into_keys()
        .collect();
    assert_eq!(run_doc, table::codes_of("run"), "usage.md's run table");
    // Every command named in the table exists (its help printed above); every code but 1 and 2
    // is returned by some command.
    for code in table::TABLE.iter().map(|c| c.code) {
        assert!(
            table::COMMANDS
                .iter()
                .any(|(name, _)| table::codes_of(name).contains(&code)),
            "no command returns {code}"
        );
    }
}

#[test]
fn a_refused_serve_and_a_run_refused_by_the_server_share_one_code() {
    // 12 is configuration for every command; a refusal is 16 on both sides.
    let serve = help_rows(&help_of(&["serve"]));
    assert_eq!(serve.get(&16).map(String::as_str), Some("refused"));
    assert!(!serve.contains_key(&12), "{serve:?}");
    let run = help_rows(&help_of(&["run"]));
    assert_eq!(run.get(&16).map(String::as_str), Some("refused"));
    assert_eq!(run.get(&12).map(String::as_str), Some("config"));
    assert_eq!(exit::REFUSED, i32::from(table::REFUSED));
    assert_eq!(exit::CONFIG, i32::from(table::CONFIG));
}

/// The JSON error object of a failed `--json` run, after checking the one line on stderr.
fn json_error(run: &Run, code: i32, kind: &str) -> String {
    run.code(code);
    let got = run.json();
    let error = &got["error"];
    assert_eq!(error["code"], code, "{got}");
    assert_eq!(error["kind"], kind, "{got}");
    let message = error["message"].as_str().unwrap().to_string();
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines,
        [format!("rsbackup: {message}")],
        "stderr: {}",
        run.stderr
    );
    message
}

#[test]
fn json_mode_errors_are_a_json_object_on_stdout_and_one_line_on_stderr() {
    let dir = tempdir();
    let missing = dir.path().join("nope");
    let missing_s = missing.to_str().unwrap();
    for command in [
        vec!["sessions", "--json"],
        vec!["key", "list", "--json"],
        vec!["check", "--json"],
        vec!["stats", "--json"],
    ] {
        let mut args = command.clone();
        args.extend(["--repo", missing_s]);
        let message = json_error(&rsbackup(&args), exit::NOT_A_REPOSITORY, "not-a-repository");
        assert!(message.contains(missing_s), "{command:?}: {message}");
    }
    // Without --json, stdout stays empty.
    let run = rsbackup(["sessions", "--repo", missing_s]);
    run.code(exit::NOT_A_REPOSITORY);
    assert!(run.stdout.is_empty());
    // A bad command line with --json answers in JSON too.
    let message = json_error(&rsbackup(["ls", "--json", "--bogus"]), exit::USAGE, "usage");
    assert!(message.contains("--bogus"), "{message}");

    // A missing session of a real repository, through restore --json.
    let t = TestRepo::new();
    let run = t.run_with_identity(
        "restore",
        &[
            arg("--json"),
            arg("--session"),
            arg("99"),
            arg("--target"),
            arg(t.path("to")),
        ],
    );
    json_error(&run, exit::NOT_FOUND, "not-found");

    // A repository.toml that does not load is a configuration error like any other file.
    let toml = t.repo.join("repository.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let broken = text.replacen("[packs]\n", "[packs]\ncolour = \"blue\"\n", 1);
    assert_ne!(broken, text);
    std::fs::write(&toml, broken).unwrap();
    let message = json_error(&t.run("sessions", &["--json"]), exit::CONFIG, "config");
    assert!(message.contains("repository.toml"), "{message}");
}

#[test]
fn restore_and_key_list_print_json() {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("a"), &pattern(1, 100_000));
    write_file(&src.join("d/b"), b"bee");
    let session = t.ingest("web1", &src);
    let target = t.path("to");
    let run = t.run_with_identity(
        "restore",
        &[
            arg("--json"),
            arg("--session"),
            arg(session.to_string()),
            arg("--target"),
            arg(&target),
        ],
    );
    run.ok();
    let got = run.json();
    assert_eq!(got["session"], session.to_string(), "{got}");
    assert_eq!(got["outcome"], "ok", "{got}");
    assert_eq!(got["exit_code"], 0, "{got}");
    assert_eq!(got["files"], 2, "{got}");
    assert_eq!(got["bytes"], 100_003, "{got}");
    assert_eq!(got["errors"], serde_json::json!([]), "{got}");
    assert_eq!(got["target"], target.to_str().unwrap(), "{got}");
    assert_trees_equal(&src, &target);

    let run = rsbackup([
        arg("key"),
        arg("list"),
        arg("--json"),
        arg("--repo"),
        arg(&t.repo),
    ]);
    run.ok();
    let got = run.json();
    assert_eq!(got["recipients"], serde_json::json!([t.recipient]), "{got}");
    assert_eq!(got["rewrap_pending"], false, "{got}");
}

#[test]
fn run_json_names_the_error_of_a_configuration_that_does_not_load() {
    let dir = tempdir();
    let config = dir.path().join("client.toml");
    std::fs::write(&config, "name = \n").unwrap();
    let run = rsbackup([arg("run"), arg("--json"), arg("--config"), arg(&config)]);
    run.code(exit::CONFIG);
    let got = run.json();
    assert_eq!(got["outcome"], "failed", "{got}");
    assert_eq!(got["exit_code"], exit::CONFIG, "{got}");
    assert_eq!(got["error"]["kind"], "config", "{got}");
    assert!(
        got["error"]["message"]
            .as_str()
            .unwrap()
            .contains(config.to_str().unwrap()),
        "{got}"
    );
}

#[test]
fn client_and_server_configurations_come_from_their_own_variables() {
    let dir = tempdir();
    let client = dir.path().join("client-from-env.toml");
    let server = dir.path().join("server-from-env.toml");
    // Both broken: which one a command read shows in its error.
    std::fs::write(&client, "name = \n").unwrap();
    std::fs::write(&server, "repository = \n").unwrap();
    let env = [
        ("RSBACKUP_CONFIG", client.to_str().unwrap()),
        ("RSBACKUP_SERVER_CONFIG", server.to_str().unwrap()),
    ];
    // `run` reads RSBACKUP_CONFIG, never the server's variable.
    let run = rsbackup_env(["run"], &env);
    run.code(exit::CONFIG);
    assert!(
        run.stderr.contains("client-from-env.toml"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("server-from-env"), "{}", run.stderr);
    // Server commands read RSBACKUP_SERVER_CONFIG, never the client's.
    for command in ["status", "watch", "accept-machine --client web1"] {
        let args: Vec<&str> = command.split(' ').collect();
        let run = rsbackup_env(&args, &env);
        run.code(exit::CONFIG);
        assert!(
            run.stderr.contains("server-from-env.toml"),
            "{command}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("client-from-env"),
            "{command}: {}",
            run.stderr
        );
    }
    // A flag wins over the variable.
    let flag = dir.path().join("flag.toml");
    std::fs::write(&flag, "repository = \n").unwrap();
    let run = rsbackup_env([arg("status"), arg("--config"), arg(&flag)], &env);
    run.code(exit::CONFIG);
    assert!(run.stderr.contains("flag.toml"), "{}", run.stderr);
    // The forced commands take their configuration from the authorized_keys line only.
    for command in ["serve", "mirror-serve"] {
        let help = help_of(&[command]);
        assert!(
            !help.contains("RSBACKUP_SERVER_CONFIG"),
            "{command}: {help}"
        );
        assert!(!help.contains("RSBACKUP_CONFIG"), "{command}: {help}");
    }
    assert!(help_of(&["status"]).contains("[env: RSBACKUP_SERVER_CONFIG="));
    assert!(help_of(&["run"]).contains("[env: RSBACKUP_CONFIG="));
}

#[test]
fn config_check_json_is_one_document_with_the_findings_and_their_error() {
    let dir = tempdir();
    let config = dir.path().join("server.toml");
    // Valid, but its paths do not exist yet: findings on lines 1 and 2.
    std::fs::write(
        &config,
        format!(
            "repository = \"{d}/repo\"\nstaging-root = \"{d}/staging\"\n\n[mail]\n\
             from = \"rsbackup@backup.example.org\"\nadmin = [\"root@example.org\"]\n\
             transport = \"directory\"\ndirectory = \"{d}\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let check = || {
        rsbackup([
            arg("config"),
            arg("check"),
            arg("--json"),
            arg("--server"),
            arg(&config),
        ])
    };
    let run = check();
    run.code(exit::CONFIG);
    let got = run.json();
    assert_eq!(got["file"], config.to_str().unwrap(), "{got}");
    let lines: Vec<u64> = got["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["line"].as_u64())
        .collect();
    assert!(lines.contains(&1) && lines.contains(&2), "{got}");
    assert_eq!(got["error"]["kind"], "config", "{got}");
    assert!(
        run.stderr.contains(&format!("{}:1: ", config.display())),
        "{}",
        run.stderr
    );
    // A file that does not parse: the loader's error alone, as JSON.
    std::fs::write(&config, "repository = \n").unwrap();
    let message = json_error(&check(), exit::CONFIG, "config");
    assert!(
        message.contains(&format!("{}:1", config.display())),
        "{message}"
    );
}

fn state_of(t: &TestRepo, session: i64) -> String {
    let run = t.run("sessions", &["--json"]);
    run.ok();
    let all = run.json();
    let row = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == session)
        .unwrap_or_else(|| panic!("no session {session}: {all}"))
        .clone();
    row["state"].as_str().unwrap().to_string()
}

/// docs/usage.md "Exit code 3 and a partial session": the state is the backup's, exit 3 this
/// command's.
#[test]
fn exit_code_3_is_about_this_command_not_the_sessions_state() {
    let t = TestRepo::new();
    let small = t.path("small");
    write_file(&small.join("note"), &text(1, 2_000));
    let big = t.path("big");
    write_file(&big.join("data"), &pattern(2, 3 << 20));
    let partial = t.ingest("web1", &small);
    t.mark_partial(partial, "rsync exit 23: files vanished");
    let complete = t.ingest("web1", &big);
    assert_eq!(state_of(&t, partial), "partial");
    assert_eq!(state_of(&t, complete), "complete");

    // A partial session restores with 0: what it holds comes back whole; check finds nothing.
    let target = t.path("from-partial");
    t.restore_run(partial, &target, &[]).ok();
    assert_trees_equal(&small, &target);
    t.check_run(true, false).ok();

    // Damage in the complete session: restore exits 3, check exits 3, the states stand.
    let victim = largest_data_chunk(&t.repo);
    flip_byte(&victim.pack, victim.offset + victim.length / 2);
    let run = t.restore_run(complete, &t.path("from-complete"), &[]);
    run.code(exit::PARTIAL);
    assert!(run.stderr.contains("data"), "{}", run.stderr);
    t.check_run(true, false).code(exit::PARTIAL);
    assert_eq!(state_of(&t, complete), "complete");
    assert_eq!(state_of(&t, partial), "partial");
    t.restore_run(partial, &t.path("from-partial-again"), &[])
        .ok();
}
