"""The image commands through the installed ``dockyard`` CLI, against a real registry on loopback."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.support.images import ImageSet

pytestmark = pytest.mark.integration


def repository_of(reference: str) -> str:
    return reference.rsplit(":", 1)[0]


def short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def unique_repository(test_images: ImageSet, prefix: str) -> str:
    """Return a repository on the session registry that no other test pushes to."""
    return f"{test_images.host}/{prefix}-{uuid.uuid4().hex[:8]}"


# -- images ------------------------------------------------------------------------------


def test_images_table(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    lines = dockyard.run("images").stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert len(lines) == 2
    columns = re.split(r"\s{2,}", lines[1])
    assert columns[0] == repository_of(test_images.busybox)
    assert columns[1] == "latest"
    assert columns[2] == short(test_images.built["busybox"].config_digest)
    assert columns[3].endswith(" ago")
    assert re.fullmatch(r"[\d.]+(B|kB|MB)", columns[4])


def test_images_quiet_and_no_trunc(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    config = test_images.built["busybox"].config_digest
    assert dockyard.run("images", "-q").stdout == short(config) + "\n"
    assert dockyard.run("images", "-q", "--no-trunc").stdout == config + "\n"


def test_images_digests_column(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    lines = dockyard.run("images", "--digests").stdout.splitlines()
    assert "DIGEST" in lines[0]
    assert test_images.built["busybox"].digest in lines[1]


def test_images_format_template_and_json(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    shown = dockyard.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert shown == test_images.busybox + "\n"
    rows = [json.loads(line) for line in dockyard.run("images", "--format", "json").stdout.splitlines()]
    assert len(rows) == 1
    assert rows[0]["Repository"] == repository_of(test_images.busybox)
    assert rows[0]["ID"] == short(test_images.built["busybox"].config_digest)
    table = dockyard.run("images", "--format", "table {{.Repository}}\\t{{.Tag}}").stdout.splitlines()
    assert re.split(r"\s{2,}", table[0]) == ["REPOSITORY", "TAG"]


def test_images_filters(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    dockyard.run("pull", test_images.layered)
    busybox_repository = repository_of(test_images.busybox)
    by_reference = dockyard.run("images", "--format", "{{.Repository}}", "--filter", "reference=*/test/busy*").stdout
    assert by_reference.split() == [busybox_repository]
    positional = dockyard.run("images", "--format", "{{.Repository}}", busybox_repository).stdout
    assert positional.split() == [busybox_repository]
    assert dockyard.run("images", "-q", "--filter", "dangling=true").stdout == ""
    assert len(dockyard.run("images", "-q", "--filter", "dangling=false").stdout.split()) == 2
    bad = dockyard.run("images", "--filter", "nonsense=1", check=False)
    assert bad.returncode != 0
    assert "nonsense" in bad.stderr


def test_images_pulled_by_digest_shows_repository(dockyard, test_images: ImageSet):
    built = test_images.built["busybox"]
    repository = repository_of(test_images.busybox)
    dockyard.run("pull", f"{repository}@{built.digest}")
    columns = re.split(r"\s{2,}", dockyard.run("images").stdout.splitlines()[1])
    assert columns[:3] == [repository, "<none>", short(built.config_digest)]
    shown = dockyard.run("images", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}").stdout
    assert shown == f"{repository} <none> {built.digest}\n"


def test_images_quiet_prints_each_row(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    dockyard.run("tag", test_images.busybox, "mine/box:v1")
    config = short(test_images.built["busybox"].config_digest)
    assert dockyard.run("images", "-q").stdout == f"{config}\n{config}\n"


def test_images_json_containers_not_counted(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    row = json.loads(dockyard.run("images", "--format", "json").stdout)
    assert row["Containers"] == "N/A"
    # Only --digests or a template with {{.Digest}} fills the digest, as in Docker.
    assert row["Digest"] == "<none>"


def test_images_unknown_template_field_fails(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    result = dockyard.run("images", "--format", "{{.Repository}} {{.Nope}}", check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    expected = 'template: :1:18: executing "" at <.Nope>: can\'t evaluate field Nope in type *formatter.imageContext'
    assert expected in result.stderr


# -- inspect and history -------------------------------------------------------------------


def test_inspect_shape(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    built = test_images.built["busybox"]
    documents = json.loads(dockyard.run("inspect", test_images.busybox).stdout)
    assert len(documents) == 1
    image = documents[0]
    assert image["Id"] == built.config_digest
    assert image["RepoTags"] == [test_images.busybox]
    assert image["RepoDigests"] == [f"{repository_of(test_images.busybox)}@{built.digest}"]
    assert image["Parent"] == ""
    assert image["Os"] == "linux"
    assert image["Config"]["Cmd"] == ["sh"]
    assert image["RootFS"] == {"Type": "layers", "Layers": built.diff_ids}
    assert image["Size"] > 0
    assert "LastTagTime" in image["Metadata"]


def test_inspect_by_id_digest_and_short_id(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    built = test_images.built["busybox"]
    names = [
        built.config_digest,
        built.config_digest.split(":")[1],
        short(built.config_digest),
        f"{repository_of(test_images.busybox)}@{built.digest}",
        repository_of(test_images.busybox),
    ]
    for name in names:
        shown = dockyard.run("inspect", "--format", "{{.Id}}", name).stdout
        assert shown == built.config_digest + "\n", name


def test_inspect_json_template(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    config = json.loads(dockyard.run("inspect", "--format", "{{json .Config}}", test_images.busybox).stdout)
    assert config["Cmd"] == ["sh"]


def test_inspect_missing_image(dockyard):
    result = dockyard.run("inspect", "no-such-image", check=False)
    assert result.returncode == 1
    assert result.stdout.strip() == "[]"
    assert "No such image: no-such-image" in result.stderr


def test_history(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.layered)
    lines = dockyard.run("history", test_images.layered).stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert lines[1].startswith(short(test_images.built["layered"].config_digest))
    assert all(line.startswith("<missing>") for line in lines[2:])
    assert len(lines) - 1 >= len(test_images.built["layered"].layer_digests)
    quiet = dockyard.run("history", "-q", "--no-trunc", test_images.layered).stdout.split()
    assert quiet[0] == test_images.built["layered"].config_digest


def test_history_human_flag(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.plain)
    human = dockyard.run("history", "-H", test_images.plain).stdout.splitlines()
    assert human[1].split()[1:4] == ["3", "years", "ago"] or " ago " in human[1]
    for flag in ("--human=false", "-H=false", "-H=0"):
        rows = dockyard.run("history", flag, "--format", "{{.CreatedSince}}|{{.CreatedAt}}|{{.Size}}",
                            test_images.plain).stdout.splitlines()
        for row in rows:
            created_since, created_at, size = row.split("|")
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", created_since), (flag, row)
            assert created_at == created_since
            assert size.isdigit(), (flag, row)
    # As in Docker, "-H false" is the flag followed by the image name "false".
    separate = dockyard.run("history", "-H", "false", check=False)
    assert separate.returncode == 1
    assert "No such image: false:latest" in separate.stderr


def test_history_unknown_template_field_fails(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.plain)
    result = dockyard.run("history", "--format", "{{.Nope}}", test_images.plain, check=False)
    assert result.returncode == 1
    assert "can't evaluate field Nope in type *formatter.historyContext" in result.stderr


# -- tag, push, rmi, prune ------------------------------------------------------------------


def test_tag_adds_reference(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    dockyard.run("tag", test_images.busybox, "mine/box:v1")
    tags = json.loads(dockyard.run("inspect", "mine/box:v1").stdout)[0]["RepoTags"]
    assert sorted(tags) == sorted([test_images.busybox, "mine/box:v1"])
    missing = dockyard.run("tag", "no-such-image", "x:y", check=False)
    assert missing.returncode == 1
    assert "No such image: no-such-image" in missing.stderr


def test_push_then_pull_into_fresh_root(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.layered)
    target = unique_repository(test_images, "pushed") + ":v1"
    dockyard.run("tag", test_images.layered, target)
    result = dockyard.run("push", target)
    lines = result.stdout.splitlines()
    assert lines[0] == f"The push refers to repository [{repository_of(target)}]"
    # Every layer came from test/layered on the same registry, so each one is mounted.
    assert sum("Mounted from test/layered" in line for line in lines) == len(test_images.built["layered"].layer_digests)
    final = re.fullmatch(r"v1: digest: (sha256:[0-9a-f]{64}) size: (\d+)", lines[-1])
    assert final is not None, lines[-1]
    assert final.group(1) == test_images.built["layered"].digest

    again = dockyard.run("push", target).stdout
    assert "Layer already exists" in again

    fresh = dockyard.another()
    fresh.run("pull", target)
    assert fresh.image_ids() == [test_images.built["layered"].config_digest]


def test_push_quiet_prints_reference(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    target = unique_repository(test_images, "quiet") + ":v1"
    dockyard.run("tag", test_images.busybox, target)
    assert dockyard.run("push", "-q", target).stdout == f"{target}\n"


def test_push_and_pull_all_tags(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    dockyard.run("pull", test_images.layered)
    repository = unique_repository(test_images, "alltags")
    dockyard.run("tag", test_images.busybox, f"{repository}:v1")
    dockyard.run("tag", test_images.layered, f"{repository}:v2")

    pushed = dockyard.run("push", "--all-tags", repository).stdout.splitlines()
    assert pushed.count(f"The push refers to repository [{repository}]") == 1
    assert f"v1: digest: {test_images.built['busybox'].digest} size: " in "\n".join(pushed)
    assert f"v2: digest: {test_images.built['layered'].digest} size: " in "\n".join(pushed)

    fresh = dockyard.another()
    pulled = fresh.run("pull", "-a", repository).stdout.splitlines()
    assert "v1: Pulling from " + repository.split("/", 1)[1] in pulled
    assert "v2: Pulling from " + repository.split("/", 1)[1] in pulled
    assert pulled[-2:] == [f"Status: Downloaded newer image for {repository}", repository]
    shown = fresh.run("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.splitlines()
    assert sorted(shown) == [
        f"{repository}:v1 {short(test_images.built['busybox'].config_digest)}",
        f"{repository}:v2 {short(test_images.built['layered'].config_digest)}",
    ]


def test_all_tags_rejects_a_tag(dockyard, test_images: ImageSet):
    for command in ("pull", "push"):
        result = dockyard.run(command, "-a", test_images.busybox, check=False)
        assert result.returncode == 1
        assert f"{command} --all-tags takes a repository name without a tag or digest" in result.stderr


def test_push_loaded_image_uploads_blobs(dockyard, test_images: ImageSet, tmp_path):
    dockyard.run("pull", test_images.busybox)
    archive = tmp_path / "busybox.tar"
    dockyard.run("save", "-o", str(archive), test_images.busybox)
    other = dockyard.another()
    other.run("load", "-i", str(archive))
    target = unique_repository(test_images, "loaded") + ":latest"
    other.run("tag", test_images.busybox, target)
    other.run("push", target)
    fresh = dockyard.another()
    fresh.run("pull", target)
    assert fresh.image_ids() == [test_images.built["busybox"].config_digest]


def test_push_missing_tag_fails(dockyard, test_images: ImageSet):
    result = dockyard.run("push", f"{test_images.host}/never/pulled:latest", check=False)
    assert result.returncode == 1
    assert "never/pulled" in result.stderr


def test_rmi_keeps_shared_base_layer(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    dockyard.run("pull", test_images.layered)
    busybox = test_images.built["busybox"]
    layered = test_images.built["layered"]
    snapshots_before = dockyard.snapshots()
    assert len(snapshots_before) == len(layered.layer_digests)

    output = dockyard.run("rmi", test_images.layered).stdout.splitlines()
    assert output[0] == f"Untagged: {test_images.layered}"
    assert f"Deleted: {layered.config_digest}" in output
    # The busybox layer is the base of both images and stays; the two upper layers go.
    assert len(dockyard.snapshots()) == 1
    assert dockyard.blobs() == {busybox.digest, busybox.config_digest, *busybox.layer_digests}
    assert dockyard.image_ids() == [busybox.config_digest]

    dockyard.run("rmi", test_images.busybox)
    assert dockyard.snapshots() == set()
    assert dockyard.blobs() == set()
    assert dockyard.image_ids() == []


def test_rmi_second_tag_only_untags(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    dockyard.run("tag", test_images.busybox, "mine/box:v1")
    assert dockyard.run("rmi", "mine/box:v1").stdout == "Untagged: mine/box:v1\n"
    assert dockyard.image_ids() == [test_images.built["busybox"].config_digest]


def test_rmi_by_id_with_two_repositories_needs_force(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    dockyard.run("tag", test_images.busybox, "mine/box:v1")
    config = test_images.built["busybox"].config_digest
    refused = dockyard.run("rmi", short(config), check=False)
    assert refused.returncode == 1
    assert "must be forced" in refused.stderr
    assert dockyard.image_ids() == [config]
    forced = dockyard.run("rmi", "-f", short(config)).stdout
    assert f"Deleted: {config}" in forced
    assert dockyard.image_ids() == []


def test_rmi_refuses_image_used_by_container(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    config = test_images.built["busybox"].config_digest
    container = dockyard.run("create", test_images.busybox, "true").stdout.strip()
    try:
        refused = dockyard.run("rmi", test_images.busybox, check=False)
        assert refused.returncode == 1
        assert container[:12] in refused.stderr
        assert dockyard.image_ids() == [config]
    finally:
        dockyard.run("rm", "-f", container)


def test_rmi_missing_image(dockyard):
    result = dockyard.run("rmi", "no-such-image", check=False)
    assert result.returncode == 1
    # Docker names the reference with the default tag filled in.
    assert "No such image: no-such-image:latest" in result.stderr


def test_image_prune_dangling_and_all(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    dockyard.run("pull", test_images.plain)
    busybox = test_images.built["busybox"].config_digest
    plain = test_images.built["plain"].config_digest
    # Moving the only tag of busybox to another image leaves busybox dangling.
    dockyard.run("tag", test_images.plain, test_images.busybox)
    dangling = dockyard.run("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split()
    assert dangling == [busybox]
    rows = dockyard.run("images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}").stdout.splitlines()
    # The untagged image keeps its repository digest, so Docker shows the repository with tag <none>.
    assert f"{repository_of(test_images.busybox)} <none> {short(busybox)}" in rows

    pruned = dockyard.run("image", "prune", "-f").stdout
    assert "Deleted Images:" in pruned
    assert f"deleted: {busybox}" in pruned
    assert "Total reclaimed space: 0B" not in pruned
    assert dockyard.image_ids() == [plain]
    # The busybox layer is also the base of plain, so its snapshot stays.
    assert len(dockyard.snapshots()) == len(test_images.built["plain"].layer_digests)

    nothing = dockyard.run("image", "prune", "-f").stdout
    assert nothing == "Total reclaimed space: 0B\n"

    everything = dockyard.run("image", "prune", "-a", "-f").stdout
    assert f"deleted: {plain}" in everything
    assert dockyard.image_ids() == []
    assert dockyard.snapshots() == set()
    assert dockyard.blobs() == set()


def test_image_prune_asks_without_force(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    declined = dockyard.run("image", "prune", "-a", input="n\n")
    assert "Are you sure you want to continue?" in declined.stdout
    assert len(dockyard.image_ids()) == 1


def test_image_prune_prompt_without_input(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    dockyard.run("pull", test_images.plain)
    dockyard.run("tag", test_images.plain, test_images.busybox)
    prompt = "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
    for answer in ("", "yes\n"):
        declined = dockyard.run("image", "prune", input=answer)
        # Without a terminal nothing echoes the answer, so the prompt's line is ended for it.
        assert declined.stdout == prompt + "\n", answer
        assert len(dockyard.image_ids()) == 2
    accepted = dockyard.run("image", "prune", input="y\n")
    assert accepted.stdout.startswith(prompt + "\nDeleted Images:\n")
    assert dockyard.image_ids() == [test_images.built["plain"].config_digest]


def test_blob_lock_files_are_removed(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.layered)
    lock_directory = dockyard.root / "locks" / "blobs"
    assert not lock_directory.exists() or list(lock_directory.iterdir()) == []
    # A lock file left by a process that crashed goes with the next garbage collection.
    lock_directory.mkdir(parents=True, exist_ok=True)
    (lock_directory / "sha256-0000").touch()
    dockyard.run("image", "prune", "-f")
    assert list(lock_directory.iterdir()) == []


# -- save and load ----------------------------------------------------------------------


def test_save_and_load_into_fresh_root(dockyard, test_images: ImageSet, tmp_path):
    dockyard.run("pull", test_images.layered)
    archive = tmp_path / "layered.tar"
    dockyard.run("save", "-o", str(archive), test_images.layered)
    assert archive.stat().st_size > 0
    assert not list(tmp_path.glob(".*partial"))

    fresh = dockyard.another()
    loaded = fresh.run("load", "-i", str(archive)).stdout
    assert loaded == f"Loaded image: {test_images.layered}\n"
    assert fresh.image_ids() == [test_images.built["layered"].config_digest]
    assert len(fresh.snapshots()) == len(test_images.built["layered"].layer_digests)
    inspected = json.loads(fresh.run("inspect", test_images.layered).stdout)[0]
    assert inspected["RootFS"]["Layers"] == test_images.built["layered"].diff_ids


def test_save_to_stdout_and_load_from_stdin(dockyard, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    saved = dockyard.run("save", test_images.busybox, input=b"")
    assert saved.stdout[:512].rstrip(b"\0")  # a tar header, not empty
    fresh = dockyard.another()
    loaded = fresh.run("load", "-q", input=saved.stdout)
    # As in Docker, -q hides the progress but not the names.
    assert loaded.stdout == f"Loaded image: {test_images.busybox}\n".encode()
    assert fresh.image_ids() == [test_images.built["busybox"].config_digest]


def test_save_load_round_trip_keeps_repo_digest(dockyard, test_images: ImageSet, tmp_path):
    dockyard.run("pull", test_images.plain)
    archive = tmp_path / "plain.tar"
    dockyard.run("save", "-o", str(archive), test_images.plain)
    fresh = dockyard.another()
    fresh.run("load", "-i", str(archive))
    digests = fresh.run("images", "--format", "{{.Digest}}").stdout
    assert digests == test_images.built["plain"].digest + "\n"


def test_save_by_id_writes_no_tags(dockyard, test_images: ImageSet, tmp_path):
    dockyard.run("pull", test_images.busybox)
    config = test_images.built["busybox"].config_digest
    archive = tmp_path / "by-id.tar"
    dockyard.run("save", "-o", str(archive), short(config))
    fresh = dockyard.another()
    assert fresh.run("load", "-i", str(archive)).stdout == f"Loaded image ID: {config}\n"
    assert fresh.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout == "<none>:<none>\n"


def test_load_bad_archive_records_nothing(dockyard, tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar archive" * 100)
    result = dockyard.run("load", "-i", str(bad), check=False)
    assert result.returncode == 1
    assert f"cannot load images from {bad}: not a valid tar archive" in result.stderr
    assert dockyard.image_ids() == []
    assert dockyard.blobs() == set()


def test_save_missing_image(dockyard, tmp_path):
    output = tmp_path / "none.tar"
    result = dockyard.run("save", "-o", str(output), "no-such-image", check=False)
    assert result.returncode == 1
    assert not output.exists()


# -- login and logout, and command aliases -------------------------------------------------


def test_login_push_logout(dockyard, basic_registry, test_images: ImageSet):
    dockyard.run("pull", test_images.busybox)
    target = f"{basic_registry.host}/private/box:latest"
    dockyard.run("tag", test_images.busybox, target)

    denied = dockyard.run("push", target, check=False)
    assert denied.returncode == 1
    assert basic_registry.host in denied.stderr

    wrong = dockyard.run("login", "-u", "alice", "--password-stdin", basic_registry.host, input="nope\n", check=False)
    assert wrong.returncode == 1
    assert basic_registry.host in wrong.stderr

    ok = dockyard.run("login", "-u", "alice", "--password-stdin", basic_registry.host, input="wonderland\n")
    assert "Login Succeeded" in ok.stdout
    config_json = dockyard.docker_config / "config.json"
    assert f"WARNING! Your credentials are stored unencrypted in '{config_json}'." in ok.stderr
    dockyard.run("push", target)

    other = dockyard.another()
    assert other.run("pull", target, check=False).returncode == 1
    other.run("login", "-u", "alice", "-p", "wonderland", basic_registry.host)
    other.run("pull", target)
    assert other.image_ids() == [test_images.built["busybox"].config_digest]

    assert "Removing login credentials" in other.run("logout", basic_registry.host).stdout
    assert other.run("pull", target, check=False).returncode == 1


def test_image_group_aliases(dockyard, test_images: ImageSet):
    dockyard.run("image", "pull", "-q", test_images.busybox)
    assert dockyard.run("image", "ls", "-q").stdout.strip() == short(test_images.built["busybox"].config_digest)
    assert dockyard.run("image", "list", "-q").stdout.strip() == short(test_images.built["busybox"].config_digest)
    dockyard.run("image", "inspect", test_images.busybox)
    dockyard.run("image", "history", test_images.busybox)
    dockyard.run("image", "tag", test_images.busybox, "alias/box:1")
    assert dockyard.run("image", "rm", "alias/box:1").stdout == "Untagged: alias/box:1\n"
    dockyard.run("image", "remove", test_images.busybox)
    assert dockyard.image_ids() == []


def test_unknown_flag_is_usage_error(dockyard):
    result = dockyard.run("images", "--no-such-flag", check=False)
    assert result.returncode == 125
