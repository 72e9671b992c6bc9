"""The front door clients call (deploy.endpoint): the HTTP API (resources.py) or the function URL
(function_url.py), both on 'live'. Switching from one to the other keeps the old door answering
until the new one has answered the smoke-test photo with verify's class over HTTP; only then is the
old one (deploy's own: tagged, or marked) deleted. A door that does not answer in time stops the
deploy with both doors left standing, so clients of the old one never see it go dark.

Where AWS_ENDPOINT_URL names a stand-in for AWS (the tests' proxy), the door is called there, with
the door's host in the Host header: the stand-in answers for it as AWS would."""

import base64
import json
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import botocore.auth
import botocore.awsrequest
import requests

from pipeline import cli, params
from pipeline.deploy import function_url, resources
from pipeline.deploy.aws import Clients

ANSWER_S = 120  # a new URL's or API's DNS name and permissions take a while to reach every AWS front end
RETRY_S = 2.0


def open_door(
    d: params.Deploy, clients: Clients, alias_arn: str, account: str, partition: str, expected: tuple[Path, str]
) -> str:
    """The door deploy.endpoint names, made or updated; the other door, where deploy made it, deleted
    once this one answers. Its URL."""
    lam, apigw = clients.lam, clients.apigw
    if d.endpoint == "function_url":
        url = function_url.ensure(lam, d, account, partition)
        old = resources.find_apis(apigw, d)
        if old:
            answer_through(d, url, *expected)
            for api in old:
                apigw.delete_api(ApiId=api["ApiId"])
                print(f"the function URL answers: API {d.api_name} ({api['ApiId']}) deleted")
            resources.disallow_api(lam, d)
        return url
    url = resources.ensure_api(apigw, lam, d, alias_arn, account, partition)
    found = function_url.find(lam, d)
    if found is not None and function_url.marked(lam, function_url.function_arn(d, account, partition)):
        answer_through(d, url, *expected)
        function_url.delete(lam, d, account, partition)
        print(f"the HTTP API answers: the function URL {found['FunctionUrl']} deleted")
    return url


def request(d: params.Deploy, url: str, body: bytes) -> requests.Response:
    """POST the body to the door; signed (SigV4, service lambda) where the URL's auth is AWS_IAM."""
    headers = {"Content-Type": "application/json"}
    if d.endpoint == "function_url" and d.url_auth == "AWS_IAM":
        credentials = boto3.Session().get_credentials()
        signed = botocore.awsrequest.AWSRequest(method="POST", url=url, data=body, headers=headers)
        botocore.auth.SigV4Auth(credentials, "lambda", d.region).add_auth(signed)
        headers = dict(signed.headers)
    target, stand_in = url, os.environ.get("AWS_ENDPOINT_URL")
    if stand_in:
        parts = urlsplit(url)
        headers["Host"] = parts.netloc
        target = stand_in.rstrip("/") + (parts.path or "/")
    return requests.post(target, data=body, headers=headers, timeout=60)


def answer_through(d: params.Deploy, url: str, photo: Path, expected: str) -> None:
    """The door answers the photo (JSON, base64, as client.py sends it) with the expected class."""
    body = json.dumps({"image": base64.b64encode(photo.read_bytes()).decode()}).encode()
    deadline, last = time.monotonic() + ANSWER_S, ""
    while True:
        try:
            answer = request(d, url, body)
            top = answer.json().get("top") if answer.status_code == 200 else None
            if top == expected:
                print(f"{url} answers {photo.name}: {top}")
                return
            if answer.status_code == 200:
                raise cli.UserError(
                    f"{url} answered {photo.name} with {top} where {expected} was expected: the old door stays"
                )
            last = f"HTTP {answer.status_code} {answer.text[:200]}"
        except (requests.RequestException, ValueError) as e:
            last = f"{type(e).__name__}: {e}"[:300]
        if time.monotonic() > deadline:
            raise cli.UserError(f"{url} did not answer within {ANSWER_S} s ({last}): the old door stays; deploy again")
        time.sleep(RETRY_S)
