"""Ask the function which class a photo shows: a local file, a URL, or every photo in a folder.

python lambda/client.py photo.jpg
python lambda/client.py https://example.com/photo.jpg --endpoint http://127.0.0.1:8080/predict
python lambda/client.py photos/ --out answers.csv     (one row a photo: path, class, probability, error)
python lambda/client.py photo.jpg --endpoint https://ID.lambda-url.REGION.on.aws/ --iam   (an AWS_IAM URL)
"""

import argparse
import base64
import csv
import io
import json
import re
import sys
from pathlib import Path

import requests

from pipeline.serve import INVOKE_PATH

INVOKE = f"http://127.0.0.1:8080{INVOKE_PATH}"  # `make serve`
PHOTOS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")  # the formats the function reads
COLUMNS = ("path", "class", "probability", "error")


class Refused(Exception):
    """The function's answer to a photo was an error (its status and reason)."""


def signed(endpoint: str, body: bytes, headers: dict) -> dict:
    """The headers with a SigV4 signature for Lambda (a function URL with auth AWS_IAM), signed with the
    AWS credentials boto3 finds (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...), for the URL's region."""
    import boto3
    import botocore.auth
    import botocore.awsrequest

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        sys.exit("error: --iam signs with AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    found = re.search(r"\.lambda-url\.([a-z0-9-]+)\.on\.aws", endpoint)
    region = found.group(1) if found else boto3.Session().region_name or "us-east-1"
    request = botocore.awsrequest.AWSRequest(method="POST", url=endpoint, data=body, headers=headers)
    botocore.auth.SigV4Auth(credentials, "lambda", region).add_auth(request)
    return dict(request.headers)


def ask(endpoint: str, payload: dict, iam: bool = False) -> dict:
    """The function's answer; Refused with its reason when it is an error. The Invoke API answers the
    handler's result itself; API Gateway's /predict and a function URL their JSON body: either way a
    dict. iam: signed for a function URL whose auth is AWS_IAM."""
    try:
        if iam:  # the body signed is the body sent: serialized here, once
            body = json.dumps(payload).encode()
            headers = signed(endpoint, body, {"Content-Type": "application/json"})
            response = requests.post(endpoint, data=body, headers=headers, timeout=60)
        else:
            response = requests.post(endpoint, json=payload, timeout=60)
    except requests.RequestException as e:
        sys.exit(f"error: cannot reach {endpoint}: {e}")
    try:
        answer = response.json()
    except ValueError:
        raise Refused(f"{response.status_code}: the answer is not JSON: {response.text[:200]}") from None
    if not isinstance(answer, dict) or "top" not in answer:
        reason = answer.get("error") or answer.get("message") if isinstance(answer, dict) else answer
        status = answer.get("statusCode", response.status_code) if isinstance(answer, dict) else response.status_code
        hint = f" ({answer['hint']})" if isinstance(answer, dict) and answer.get("hint") else ""
        raise Refused(f"{status}: {reason}{hint}")
    return answer


def photo_payload(path: Path) -> dict:
    return {"image": base64.b64encode(path.read_bytes()).decode()}


def photos_in(folder: Path) -> list[Path]:
    """The folder's photos (not its subfolders'), by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTOS)


def classify_folder(folder: Path, endpoint: str, iam: bool = False) -> list[dict]:
    """One row a photo; a photo the function refuses is a row with its reason, not the end of the run."""
    rows = []
    for path in photos_in(folder):
        try:
            answer = ask(endpoint, photo_payload(path), iam)
            rows.append({"path": str(path), "class": answer["top"], "probability": answer["probability"], "error": ""})
        except Refused as e:
            rows.append({"path": str(path), "class": "", "probability": "", "error": str(e)})
    return rows


def as_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv: "list[str] | None" = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python lambda/client.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="an image file, an http(s) URL, or a folder of photos")
    parser.add_argument("--endpoint", default=INVOKE, help="invocation URL, or an API Gateway/function URL .../predict")
    parser.add_argument("--out", type=Path, help="a folder's CSV goes to this file (default: standard output)")
    parser.add_argument("--iam", action="store_true", help="sign each request (a function URL with auth AWS_IAM)")
    args = parser.parse_args(argv)

    if Path(args.source).is_dir():
        folder = Path(args.source)
        rows = classify_folder(folder, args.endpoint, args.iam)
        if not rows:
            sys.exit(f"error: no photos ({', '.join(PHOTOS)}) in {folder}")
        text = as_csv(rows)
        if args.out:
            args.out.write_text(text)
            refused = sum(1 for r in rows if r["error"])
            print(f"{len(rows)} photos, {refused} refused: {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return
    if args.out:
        parser.error("--out is for a folder's CSV")
    if args.source.startswith(("http://", "https://")):
        payload = {"url": args.source}
    elif Path(args.source).is_file():
        payload = photo_payload(Path(args.source))
    else:
        sys.exit(f"error: {args.source} is neither a file, a folder nor an http(s) URL")
    try:
        answer = ask(args.endpoint, payload, args.iam)
    except Refused as e:
        sys.exit(f"error {e}")
    for p in answer["predictions"]:
        print(f"{p['label']:<12}{p['probability']:.4f}")
    print(f"-> {answer['top']} ({answer['model']['variant']}, {answer['inference_ms']} ms)")


if __name__ == "__main__":
    main()
