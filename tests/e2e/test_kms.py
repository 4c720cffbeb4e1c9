"""The minimal KMS against the real binary with boto3: keys,
aliases, Encrypt/Decrypt with an encryption context, data keys, disabled and
deleted keys, AWS's errors, and key material that survives a restart and a
keyring rotation (it is sealed by the same keyring as secrets)."""

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError



def kms(server):
    return boto3.client("kms", endpoint_url=server.api, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 0}))


def code_of(e):
    return e.value.response["Error"]["Code"]


def test_keys_aliases_encrypt_decrypt_and_data_keys(server):
    c = kms(server)
    meta = c.create_key(Description="app key")["KeyMetadata"]
    kid = meta["KeyId"]
    assert meta["KeyState"] == "Enabled" and meta["Arn"].endswith(f":key/{kid}")
    c.create_alias(AliasName="alias/app", TargetKeyId=kid)
    with pytest.raises(ClientError) as e:
        c.create_alias(AliasName="alias/app", TargetKeyId=kid)
    assert code_of(e) == "AlreadyExistsException"
    assert c.describe_key(KeyId="alias/app")["KeyMetadata"]["KeyId"] == kid
    assert {"AliasName": "alias/app"}.items() <= c.list_aliases(KeyId=kid)["Aliases"][0].items()
    assert kid in [k["KeyId"] for k in c.list_keys()["Keys"]]

    ct = c.encrypt(KeyId="alias/app", Plaintext=b"hello kms", EncryptionContext={"app": "x"})["CiphertextBlob"]
    assert b"hello kms" not in ct
    d = c.decrypt(CiphertextBlob=ct, EncryptionContext={"app": "x"})
    assert d["Plaintext"] == b"hello kms" and d["KeyId"] == meta["Arn"]
    with pytest.raises(ClientError) as e:
        c.decrypt(CiphertextBlob=ct, EncryptionContext={"app": "y"})
    assert code_of(e) == "InvalidCiphertextException"
    with pytest.raises(ClientError) as e:
        c.decrypt(CiphertextBlob=b"garbage-ciphertext")
    assert code_of(e) == "InvalidCiphertextException"
    other = c.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        c.decrypt(CiphertextBlob=ct, KeyId=other, EncryptionContext={"app": "x"})
    assert code_of(e) == "IncorrectKeyException"

    dk = c.generate_data_key(KeyId=kid, KeySpec="AES_256")
    assert len(dk["Plaintext"]) == 32
    assert c.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
    nk = c.generate_data_key_without_plaintext(KeyId=kid, NumberOfBytes=16)
    assert "Plaintext" not in nk and len(c.decrypt(CiphertextBlob=nk["CiphertextBlob"])["Plaintext"]) == 16
    assert len(c.generate_random(NumberOfBytes=24)["Plaintext"]) == 24

    c.disable_key(KeyId=kid)
    with pytest.raises(ClientError) as e:
        c.encrypt(KeyId=kid, Plaintext=b"x")
    assert code_of(e) == "DisabledException"
    c.enable_key(KeyId=kid)
    c.schedule_key_deletion(KeyId=other, PendingWindowInDays=7)
    assert c.describe_key(KeyId=other)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    with pytest.raises(ClientError) as e:
        c.encrypt(KeyId=other, Plaintext=b"x")
    assert code_of(e) == "KMSInvalidStateException"
    c.cancel_key_deletion(KeyId=other)
    assert c.describe_key(KeyId=other)["KeyMetadata"]["KeyState"] == "Disabled"
    with pytest.raises(ClientError) as e:
        c.describe_key(KeyId="alias/none")
    assert code_of(e) == "NotFoundException"
    with pytest.raises(ClientError) as e:
        c.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")
    assert code_of(e) == "UnsupportedOperationException"
    with pytest.raises(ClientError) as e:
        c.sign(KeyId=kid, Message=b"x", SigningAlgorithm="RSASSA_PSS_SHA_256")
    assert code_of(e) == "NotImplemented"


def test_keys_survive_restart_and_keyring_rotation(server_factory, data_dir):
    s = server_factory()
    c = kms(s)
    kid = c.create_key()["KeyMetadata"]["KeyId"]
    ct = c.encrypt(KeyId=kid, Plaintext=b"kept")["CiphertextBlob"]
    p = s.cli("keys", "rotate")
    assert p.returncode == 0 and "re-encrypted 1 value(s) in kms" in p.stdout, p.stdout + p.stderr
    s.kill()
    s2 = server_factory()
    assert kms(s2).decrypt(CiphertextBlob=ct)["Plaintext"] == b"kept"


def test_kms_key_ids_of_secrets_and_parameters_are_checked(server):
    c = kms(server)
    kid = c.create_key()["KeyMetadata"]["KeyId"]
    c.create_alias(AliasName="alias/secrets", TargetKeyId=kid)
    opts = dict(endpoint_url=server.api, region_name="us-east-1",
                aws_access_key_id="test", aws_secret_access_key="test",
                config=Config(retries={"max_attempts": 0}))
    sm = boto3.client("secretsmanager", **opts)
    ssm = boto3.client("ssm", **opts)
    sm.create_secret(Name="kms/ok", SecretString="v", KmsKeyId="alias/secrets")
    assert sm.describe_secret(SecretId="kms/ok")["KmsKeyId"] == "alias/secrets"
    sm.create_secret(Name="kms/managed", SecretString="v", KmsKeyId="alias/aws/secretsmanager")
    with pytest.raises(ClientError) as e:
        sm.create_secret(Name="kms/bad", SecretString="v", KmsKeyId="alias/none")
    assert code_of(e) == "EncryptionFailure"
    ssm.put_parameter(Name="/kms/ok", Value="v", Type="SecureString", KeyId=kid)
    c.disable_key(KeyId=kid)
    with pytest.raises(ClientError) as e:
        ssm.put_parameter(Name="/kms/off", Value="v", Type="SecureString", KeyId=kid)
    assert code_of(e) == "InvalidKeyId"
    with pytest.raises(ClientError) as e:
        sm.update_secret(SecretId="kms/ok", KmsKeyId=kid)
    assert code_of(e) == "EncryptionFailure"


JS = r"""
const kms = require("@aws-sdk/client-kms");
const c = new kms.KMSClient({endpoint: process.argv[1], region: "us-east-1",
  credentials: {accessKeyId: "x", secretAccessKey: "y"}});
(async () => {
  const key = (await c.send(new kms.CreateKeyCommand({Description: "from js"}))).KeyMetadata;
  await c.send(new kms.CreateAliasCommand({AliasName: "alias/js-app", TargetKeyId: key.KeyId}));
  const ctx = {tenant: "t1"};
  const enc = await c.send(new kms.EncryptCommand({KeyId: "alias/js-app",
    Plaintext: Buffer.from("js secret"), EncryptionContext: ctx}));
  const dec = await c.send(new kms.DecryptCommand({CiphertextBlob: enc.CiphertextBlob,
    EncryptionContext: ctx}));
  const dk = await c.send(new kms.GenerateDataKeyCommand({KeyId: key.Arn, KeySpec: "AES_256"}));
  const dk2 = await c.send(new kms.DecryptCommand({CiphertextBlob: dk.CiphertextBlob}));
  let wrongCtx = null;
  try { await c.send(new kms.DecryptCommand({CiphertextBlob: enc.CiphertextBlob,
    EncryptionContext: {tenant: "t2"}})); } catch (e) { wrongCtx = e.name; }
  let missing = null;
  try { await c.send(new kms.EncryptCommand({KeyId: "alias/nope", Plaintext: Buffer.from("x")})); }
  catch (e) { missing = e.name; }
  console.log(JSON.stringify({
    keyId: key.KeyId, encKeyId: enc.KeyId, decKeyId: dec.KeyId,
    plaintext: Buffer.from(dec.Plaintext).toString(),
    dataKeyLen: dk.Plaintext.length,
    dataKeyRoundTrip: Buffer.compare(Buffer.from(dk.Plaintext), Buffer.from(dk2.Plaintext)) === 0,
    wrongCtx, missing}));
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_js_sdk_v3_encrypt_decrypt_and_data_keys(server):
    import json
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent.parent
    node_path = os.pathsep.join(filter(None, [str(root / "sdk" / "node_modules"),
                                              os.environ.get("NODE_PATH")]))
    env = dict(os.environ, NODE_PATH=node_path)
    probe = subprocess.run(["node", "-e", "require.resolve('@aws-sdk/client-kms')"], env=env,
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("@aws-sdk/client-kms not installed (scripts/install-sdks installs it)")
    out = subprocess.run(["node", "-e", JS, server.api], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["plaintext"] == "js secret"
    assert got["encKeyId"].endswith(got["keyId"]) and got["decKeyId"] == got["encKeyId"]
    assert got["dataKeyLen"] == 32 and got["dataKeyRoundTrip"] is True
    assert got["wrongCtx"] == "InvalidCiphertextException"
    assert got["missing"] == "NotFoundException"
