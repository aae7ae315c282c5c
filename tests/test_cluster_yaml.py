"""cluster.yaml and the IAM policies of docs/cluster.md, without AWS: Ray's schema, one pinned
environment on every node, what `ray up` ships, and the policies checked against the requests Ray's
AWS node provider and pyarrow make (on moto's AWS server, which enforces IAM policies)."""
import copy
import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from udalab.studies.run import ray_tune as runner

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "cluster.yaml").read_text())
NODE_TYPES = CONFIG["available_node_types"]
HEAD, WORKER = NODE_TYPES[CONFIG["head_node_type"]], NODE_TYPES["gpu_worker"]
SETUP = CONFIG["setup_commands"]
MOUNT = next(target for target, source in CONFIG["file_mounts"].items() if source == ".")


def policy(name: str) -> dict:
    """The JSON block of docs/cluster.md under the line naming `name`."""
    found = re.search(rf"^`{re.escape(name)}`[^\n]*:\n\n```json\n(.*?)```", (ROOT / "docs" / "cluster.md").read_text(),
                      re.S | re.M)
    assert found, f"docs/cluster.md has no ```json block under `{name}`"
    return json.loads(found.group(1))


def as_list(x) -> list:
    return x if isinstance(x, list) else [x]


def normalised(name: str) -> str:
    """A distribution's name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def bucket_prefixes() -> set[str]:
    """The bucket's prefixes that the nodes use: the syncs and UDALAB_RESULTS of the setup."""
    return {m.group(1) for cmd in SETUP for m in re.finditer(r"s3://YOUR-BUCKET/([\w.-]+)", cmd)}


def test_cluster_yaml_is_valid_for_the_ray_autoscaler():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(CONFIG)))
    assert WORKER["resources"]["GPU"] == 1
    assert runner.DRIVER_RESOURCE in HEAD["resources"]
    broken = copy.deepcopy(CONFIG)
    broken["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5
    with pytest.raises(Exception):
        validate_config(prepare_config(broken))


def test_head_and_workers_have_their_own_instance_profiles_and_the_head_passes_the_workers():
    head, worker = HEAD["node_config"]["IamInstanceProfile"]["Name"], WORKER["node_config"]["IamInstanceProfile"]["Name"]
    assert head != worker
    passes = [s for s in policy("udalab-head-policy.json")["Statement"]
              if any(a.startswith("iam:") for a in as_list(s["Action"]))]
    assert [as_list(s["Action"]) for s in passes] == [["iam:PassRole"]]
    assert as_list(passes[0]["Resource"]) == [f"arn:aws:iam::ACCOUNT-ID:role/{worker}"]
    # the docs' commands make each role the only one of the instance profile of its name
    assert re.search(r"create-role --role-name udalab-\$node\b", (ROOT / "docs" / "cluster.md").read_text())
    assert {head, worker} == {"udalab-head", "udalab-worker"}


def test_the_policies_grant_the_bucket_prefixes_the_nodes_use_and_the_worker_nothing_else():
    prefixes = bucket_prefixes()
    assert prefixes == {"datasets", "weights", "udalab-results"}
    head, worker = policy("udalab-head-policy.json"), policy("udalab-worker-policy.json")
    s3 = [s for s in head["Statement"] if all(a.startswith("s3:") for a in as_list(s["Action"]))]
    assert s3 == worker["Statement"]          # the head's S3 grants are the worker's
    for s in worker["Statement"]:
        assert s["Effect"] == "Allow" and "Condition" not in s
        for r in as_list(s["Resource"]):
            if r == "arn:aws:s3:::YOUR-BUCKET":
                assert as_list(s["Action"]) == ["s3:ListBucket"]
            else:
                assert re.fullmatch(r"arn:aws:s3:::YOUR-BUCKET/([\w.-]+)(/?\*)", r).group(1) in prefixes, r
    granted = {re.match(r"arn:aws:s3:::YOUR-BUCKET/([\w.-]+)", r).group(1)
               for s in worker["Statement"] for r in as_list(s["Resource"]) if "/" in r.split(":::")[1]}
    assert granted == prefixes
    # the head tags and terminates only the instances Ray tagged with this cluster's name
    tagged = [s for s in head["Statement"] if "ec2:TerminateInstances" in as_list(s["Action"])]
    assert [s["Condition"] for s in tagged] == [{"StringEquals": {"aws:ResourceTag/ray-cluster-name": CONFIG["cluster_name"]}}]
    assert policy("ec2-trust.json")["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_every_node_installs_the_pinned_versions_from_its_copy_of_constraints_txt():
    lines = [line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = {normalised(name): version for name, version in lines}
    for name in ("ray", "torch", "torchvision"):   # the versions these tests run
        assert pins[name] == metadata.version(name), name
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["aws"]:
        name = normalised(re.match(r"[\w.-]+", requirement).group(0))
        assert name in pins, f"constraints.txt pins no version of {name} (pyproject.toml: {requirement})"

    # the installs are the head's and the workers' alike (setup_commands), from the node's copy of this checkout
    installs = [c for c in SETUP if "pip install" in c]
    assert len(installs) == 2 and re.fullmatch(r"/usr/bin/python3 -m pip install --user -q uv==[\d.]+", installs[0])
    assert f"-c {MOUNT}/constraints.txt -e '{MOUNT}[aws]'" in installs[1]
    elsewhere = [*CONFIG.get("head_setup_commands", []), *CONFIG.get("worker_setup_commands", []),
                 *CONFIG.get("initialization_commands", []),
                 *[c for t in NODE_TYPES.values() for k in ("worker_setup_commands", "initialization_commands")
                   for c in t.get(k, [])]]
    assert not [c for c in elsewhere if "install" in c]
    assert HEAD["node_config"]["ImageId"] == WORKER["node_config"]["ImageId"]


def test_the_readme_runs_the_study_with_the_pinned_python_of_every_node():
    line = re.compile(r"ray exec cluster\.yaml --tmux '([^']*)'")
    runs = {name: line.findall((ROOT / name).read_text()) for name in ("README.md", "docs/cluster.md", "cluster.yaml")}
    assert all(runs.values()) and len({r for found in runs.values() for r in found}) == 1, runs
    cd, interpreter = re.match(r"cd (\S+) && (\S+) studies/", runs["README.md"][0]).groups()
    assert cd.replace("~", f"/home/{CONFIG['auth']['ssh_user']}") == MOUNT

    # ~/venv has the Python of the environment that froze constraints.txt (this one), pinned to the
    # patch level that Ray compares between nodes; every shell after it (setup, ray start, ray exec)
    # activates it, and setup fails on a node where `python` or `ray` is another
    venv = re.search(r"uv venv .*--python (\d+)\.(\d+)\.(\d+) (\S+)$", next(c for c in SETUP if "uv venv" in c))
    assert tuple(map(int, venv.groups()[:2])) == sys.version_info[:2]
    path = venv.group(4)
    assert f"'source {path}/bin/activate'" in next(c for c in SETUP if "> ~/.udalab_env" in c)
    assert "grep -qx 'source ~/.udalab_env' ~/.bashrc || echo 'source ~/.udalab_env' >> ~/.bashrc" in SETUP
    check = f'test "$(command -v {interpreter})" = {path}/bin/{interpreter} && test "$(command -v ray)" = {path}/bin/ray'
    assert check in SETUP
    assert SETUP.index(check) > SETUP.index(next(c for c in SETUP if "constraints.txt" in c))


def test_ray_up_ships_the_checkout_without_results_venvs_caches_or_records_data(tmp_path):
    from ray.autoscaler._private.command_runner import SSHCommandRunner

    assert CONFIG["rsync_filter"] == [".gitignore"]
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "results/" in ignored and ".venv/" in ignored
    if shutil.which("rsync") is None:
        pytest.skip("rsync is not installed (ray up needs it too)")
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = ["core/storage.py", "constraints.txt", ".git/HEAD", "records/mini_gap/manifest.json",
             "results/hrda_crop_size/trials.parquet", ".venv/bin/python", "core/__pycache__/storage.pyc",
             "records/mini_gap/trials.parquet", "records/mini_gap/runs.jsonl", ".pytest_cache/README.md"]
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_text(f)
    shutil.copy(ROOT / ".gitignore", src / ".gitignore")
    # the arguments Ray's launcher gives rsync for the file mounts, the head's to its workers too
    args = SSHCommandRunner._create_rsync_filter_args(None, {"rsync_filter": CONFIG["rsync_filter"],
                                                            "rsync_exclude": CONFIG["rsync_exclude"]})
    subprocess.run(["rsync", "-a", *args, f"{src}/", str(dst)], check=True)
    shipped = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert shipped == sorted([*files[:4], ".gitignore"])


# moto checks a policy against its names of the S3 requests; AWS authorizes each request by the
# action it belongs to ("Actions, resources, and condition keys for Amazon S3")
S3_REQUESTS = {"s3:ListBucket": ["s3:ListObjectsV2", "s3:ListObjects", "s3:HeadBucket"],
               "s3:GetObject": ["s3:GetObject", "s3:HeadObject"],
               "s3:PutObject": ["s3:PutObject", "s3:CreateMultipartUpload", "s3:UploadPart",
                                "s3:CompleteMultipartUpload"],
               "s3:DeleteObject": ["s3:DeleteObject"],
               "s3:AbortMultipartUpload": ["s3:AbortMultipartUpload"]}
BUCKET, ACCOUNT = "your-bucket", "123456789012"   # moto's account


def for_moto(doc: dict) -> dict:
    """A policy of docs/cluster.md as moto evaluates it: S3 actions by request, and no conditions
    (moto evaluates only trust policies' condition keys; AWS evaluates these)."""
    statements = []
    for s in doc["Statement"]:
        s = {k: v for k, v in s.items() if k not in ("Condition", "Sid")}
        actions = [r for a in as_list(s["Action"]) for r in S3_REQUESTS.get(a, [a])]
        statements.append({**s, "Action": actions})
        if "s3:DeleteObject" in actions:   # a multi-object delete is a bucket request in moto
            statements.append({"Effect": "Allow", "Action": "s3:DeleteObjects", "Resource": f"arn:aws:s3:::{BUCKET}"})
    text = json.dumps({**doc, "Statement": statements})
    return json.loads(text.replace("YOUR-BUCKET", BUCKET).replace("ACCOUNT-ID", ACCOUNT))


@pytest.fixture
def aws(free_port):
    """moto's AWS on localhost with the bucket, the worker's instance profile and a user holding each
    node's policy (their keys), and a subnet; IAM policies are enforced once the fixture has set them up."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    import requests

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{free_port}"
    requests.post(f"{url}/moto-api/reset")   # moto's state lives in this process, across servers
    admin = dict(endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-west-2")
    iam, s3 = boto3.client("iam", **admin), boto3.client("s3", **admin)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    for key in ("datasets/gta5/images/00001.png", "weights/mit_b5.pth", "billing/invoice.pdf"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    trust = json.dumps(policy("ec2-trust.json"))
    profile = WORKER["node_config"]["IamInstanceProfile"]["Name"]
    iam.create_role(RoleName=profile, AssumeRolePolicyDocument=trust)
    iam.create_instance_profile(InstanceProfileName=profile)
    iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=profile)
    keys = {}
    for node in ("head", "worker"):
        iam.create_user(UserName=node)
        iam.put_user_policy(UserName=node, PolicyName=node,
                            PolicyDocument=json.dumps(for_moto(policy(f"udalab-{node}-policy.json"))))
        k = iam.create_access_key(UserName=node)["AccessKey"]
        keys[node] = {"aws_access_key_id": k["AccessKeyId"], "aws_secret_access_key": k["SecretAccessKey"]}
    subnet = boto3.client("ec2", **admin).describe_subnets()["Subnets"][0]["SubnetId"]
    before = requests.post(f"{url}/moto-api/reset-auth", data=b"0").json()["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        yield url, keys, subnet
    finally:
        requests.post(f"{url}/moto-api/reset-auth", data=before.encode())
        requests.post(f"{url}/moto-api/reset")
        server.stop()


def test_the_head_policy_lets_rays_node_provider_start_tag_and_end_a_gpu_worker(aws):
    import boto3
    from botocore.exceptions import ClientError
    from ray.autoscaler._private.aws.node_provider import AWSNodeProvider

    url, keys, subnet = aws
    region = CONFIG["provider"]["region"]
    ec2 = {node: boto3.client("ec2", region_name=region, endpoint_url=url, **k) for node, k in keys.items()}
    with pytest.raises(ClientError, match="AccessDenied"):   # a worker starts nothing
        ec2["worker"].run_instances(MinCount=1, MaxCount=1, SubnetId=subnet, **WORKER["node_config"])
    with pytest.raises(ClientError, match="AccessDenied"):   # subnets are the launcher's, on your machine
        ec2["head"].describe_subnets()

    # what the autoscaler on the head does for a study's first GPU trial, and when the node idles
    provider = AWSNodeProvider({**CONFIG["provider"], "aws_credentials": {**keys["head"], "endpoint_url": url}},
                               CONFIG["cluster_name"])
    tags = {"ray-node-type": "worker", "ray-user-node-type": "gpu_worker", "ray-node-status": "uninitialized"}
    provider.create_node({**WORKER["node_config"], "SubnetIds": [subnet]}, tags, 1)
    [node] = provider.non_terminated_nodes({"ray-user-node-type": "gpu_worker"})
    provider.set_node_tags(node, {"ray-node-status": "up-to-date"})
    [instance] = ec2["head"].describe_instances(InstanceIds=[node])["Reservations"][0]["Instances"]
    assert {t["Key"]: t["Value"] for t in instance["Tags"]}["ray-node-status"] == "up-to-date"
    assert instance["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{WORKER['node_config']['IamInstanceProfile']['Name']}")
    assert instance["InstanceType"] == WORKER["node_config"]["InstanceType"]
    provider.terminate_node(node)
    assert provider.non_terminated_nodes({}) == []


@pytest.mark.parametrize("node", ["head", "worker"])
def test_a_nodes_policy_lets_pyarrow_write_results_and_read_data_and_weights_only(aws, node, tmp_path, monkeypatch):
    """The requests pyarrow (udalab's results, Tune's state, Train's checkpoints) and `aws s3 sync`
    make on a node; the results prefix of cluster.yaml's UDALAB_RESULTS."""
    import boto3
    import pyarrow.fs as pafs

    from udalab.core import storage

    url, keys, _ = aws
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[node]["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[node]["aws_secret_access_key"])
    results = re.search(r"UDALAB_RESULTS=(s3://\S+?)'", next(c for c in SETUP if "UDALAB_RESULTS" in c)).group(1)
    options = f"?endpoint_override={url.removeprefix('http://')}&scheme=http&region=us-west-2"
    fs, root = storage.fs_path(results.replace("YOUR-BUCKET", BUCKET) + options)
    assert not storage.is_dir(fs, root)                       # the first study: nothing there yet
    trial = storage.join_path(root, "hrda_crop_size", "_train", "train-0")
    fs.create_dir(trial)
    with fs.open_output_stream(storage.join_path(trial, "result.json")) as f:
        f.write(b"{}")
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "model.pt").write_bytes(bytes(1024))   # pyarrow uploads files in parts
    pafs.copy_files(str(tmp_path / "checkpoint"), storage.join_path(trial, "checkpoint_000000"), destination_filesystem=fs)
    assert storage.read_text(fs, storage.join_path(trial, "result.json")) == "{}"
    fs.delete_dir(storage.join_path(trial, "checkpoint_000000"))          # Tune keeps the latest checkpoints
    assert [i.base_name for i in storage.list_dir(fs, trial)] == ["result.json"]

    s3 = boto3.client("s3", region_name="us-west-2", endpoint_url=url, **keys[node])
    for prefix in ("datasets", "weights"):                    # aws s3 sync: list, then get
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["Contents"]
        assert [s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed] == [listed[0]["Key"].encode()]
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        with fs.open_output_stream(f"{BUCKET}/datasets/gta5/images/00002.png") as f:
            f.write(b"x")
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        fs.open_input_stream(f"{BUCKET}/billing/invoice.pdf").read()
