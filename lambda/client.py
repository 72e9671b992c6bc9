"""Ask the function which class a photo shows: a local file or a URL.

python lambda/client.py photo.jpg
python lambda/client.py https://example.com/photo.jpg --endpoint http://127.0.0.1:8080/predict
"""

import argparse
import base64
import sys
from pathlib import Path

import requests

from pipeline.serve import INVOKE_PATH

INVOKE = f"http://127.0.0.1:8080{INVOKE_PATH}"  # `make serve`


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="path of an image file, or an http(s) URL")
    parser.add_argument("--endpoint", default=INVOKE, help="invocation URL, or an API Gateway .../predict URL")
    args = parser.parse_args()

    if args.source.startswith(("http://", "https://")):
        payload = {"url": args.source}
    elif Path(args.source).is_file():
        payload = {"image": base64.b64encode(Path(args.source).read_bytes()).decode()}
    else:
        sys.exit(f"error: {args.source} is neither a file nor an http(s) URL")
    try:
        response = requests.post(args.endpoint, json=payload, timeout=60)
    except requests.RequestException as e:
        sys.exit(f"error: cannot reach {args.endpoint}: {e}")
    answer = response.json()
    if "error" in answer:
        sys.exit(f"error {answer.get('statusCode', response.status_code)}: {answer['error']}")
    for p in answer["predictions"]:
        print(f"{p['label']:<12}{p['probability']:.4f}")
    print(f"-> {answer['top']} ({answer['model']['variant']}, {answer['inference_ms']} ms)")


if __name__ == "__main__":
    main()
