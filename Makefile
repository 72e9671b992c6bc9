# clothes-serverless: `make all` builds every artifact, `make test` checks everything.
VENV := .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: all repro test test-fast test-targets lint emulators-where-root serve rie notebook deploy rollback destroy tune status logs deploy-deps emulators clean

# A bare `make` prints the targets: the full run (make all) trains for half an hour, so it is asked for by name.
.DEFAULT_GOAL := help
.PHONY: help demo
help: ## this list
	@echo "make TARGET: set up and run (README.md); the full run is make all, a 6-minute one make demo"
	@awk -F ':.*## ' '/^[a-zA-Z0-9_-]+:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

all: $(VENV)/.installed emulators-where-root repro ## set up .venv, then the full pipeline (make repro): 30-80 min on 2 cores, mostly training

$(VENV)/.installed: requirements.txt lambda/requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $@

# params.yaml checked first: DVC removes a stage's outputs before the stage reads its params.
repro: $(VENV)/.installed ## params.yaml checked, then dvc repro: every stage whose inputs changed
	python -m pipeline.params
	dvc repro
	@cat artifacts/report/summary.txt

# The suite's small run (pipeline/demo.py: 30 photos a class, 10 in validation, 5 epochs at 75 px) in build/demo/,
# its own project: the full run's outputs stay as they are. Ends with the handler answering a real test photo.
demo: $(VENV)/.installed ## the whole pipeline on a small configuration in build/demo/, to an answer (~6 min)
	python -m pipeline.demo

lint: $(VENV)/.installed ## ruff check and ruff format --check
	ruff check .
	ruff format --check .

# Three workers on 2 cores, each taking whole files (module fixtures start once): the deploy and server tests
# wait on subprocesses and servers, so a third worker fills the CPU they leave idle (the timings behind it:
# docs/toolchain.md, Measurements behind the code's rules). Files in the order tests/conftest.py sorts them
# (xdist's default puts the most tests first).
test: lint rie deploy-deps ## lint, then the suite on 3 workers (~9 min on 2 cores; docs/testing.md)
	pytest -n 3 --dist loadfile --no-loadscope-reorder

# The targets stage under qemu (Lambda's x86_64 and arm64 CPUs): a variant whose answers change on a target is
# excluded there. Minutes; the arm64 Python is made once (root) in .cache/targets. .ci/run runs it after make test.
test-targets: emulators ## the targets stage under qemu on Lambda's CPUs (minutes)
	pytest -m targets tests/stages/test_targets_emulated.py

# arm64 end to end under qemu (tests/deploy/test_deploy_arm64.py): the image and the zip built for arm64 here, run
# by the Lambda-like proxy as arm64 and answering as verify did. Minutes; .ci/run runs it after make test, on make
# test's small run (SMALL_RUN=its folder; without it the session builds its own, ~6 min more).
.PHONY: test-arm64 rie-arm64
test-arm64: rie-arm64 deploy-deps emulators ## the arm64 image and zip end to end under qemu (minutes)
	pytest -m arm64 tests/deploy/test_deploy_arm64.py $(if $(SMALL_RUN),--small-run-dir $(SMALL_RUN))

# Mutation testing (mutmut) of the modules that decide what ships and what is refused, one module at a time at low
# priority, each against its own unit tests, in copies under .cache/mutants/ (docs/mutation.md). Not part of make
# test: tens of minutes on 2 cores. MODULES=fetch (or several) runs some; the scores: benchmarks/results/mutation_*.md.
.PHONY: mutants
mutants: $(VENV)/.installed ## mutation scores of the deciding modules (minutes each; MODULES=fetch data ...)
	python benchmarks/mutants.py $(MODULES)

# End-to-end checks too slow for make test's budget (marked heavy): the docker.io deploy path, the 4-class
# own data set run, transfer learning, the plain-ReLU and selective int8, the S3 zip, ONNX and two-door
# deploys, and Keras 2 .h5 files written by tf_keras (flat at 80 px, nested at 75, the original service's 299
# px) loaded, converted and verified. Two workers, whole files each; SMALL_RUN= as for test-arm64. .ci/run
# runs it after make test.
.PHONY: test-heavy
test-heavy: $(VENV)/.installed ## the checks too slow for make test (docker.io, own data, transfer, .h5 loads)
	pytest -n 2 --dist loadfile -m heavy tests $(if $(SMALL_RUN),--small-run-dir=$(SMALL_RUN))

# The unit tests (tests/unit): the code's rules on inputs made in the test, no model run, no AWS stand-in.
test-fast: $(VENV)/.installed ## the unit tests only (tests/unit): ~30 s
	pytest -n 2 -q tests/unit

# The AWS Runtime Interface Emulator ships inside the aws-sam-cli wheel (no Docker needed).
RIE := .cache/aws-lambda-rie-x86_64
SAM_CLI_VERSION := 1.170.0
rie: $(RIE) ## the x86_64 runtime interface emulator, from the aws-sam-cli wheel
$(RIE): | $(VENV)/.installed
	mkdir -p .cache/sam
	$(BIN)/python -m pip download --quiet --no-deps aws-sam-cli==$(SAM_CLI_VERSION) -d .cache/sam
	$(BIN)/python -c "import glob, zipfile; w = zipfile.ZipFile(glob.glob('.cache/sam/aws_sam_cli-$(SAM_CLI_VERSION)-*.whl')[0]); open('$@', 'wb').write(w.read('samcli/local/rapid/aws-lambda-rie-x86_64'))"
	chmod +x $@

# The same wheel's arm64 emulator, for the arm64 stand-in base (make test-arm64).
RIE_ARM64 := .cache/aws-lambda-rie-arm64
rie-arm64: $(RIE_ARM64) ## the arm64 runtime interface emulator, from the aws-sam-cli wheel
$(RIE_ARM64): $(RIE)
	$(BIN)/python -c "import glob, zipfile; w = zipfile.ZipFile(glob.glob('.cache/sam/aws_sam_cli-$(SAM_CLI_VERSION)-*.whl')[0]); open('$@', 'wb').write(w.read('samcli/local/rapid/aws-lambda-rie-arm64'))"
	chmod +x $@

# The handler under the real Lambda runtime interface on 127.0.0.1:8080 (Ctrl-C stops it).
# VARIANT=full_int8: another variant than the recommended one (artifacts/recommend/recommendation.json);
# VERBOSE=1: everything the emulator prints, not one line a request. GET /health answers too.
serve: $(VENV)/.installed $(RIE) ## the handler under the Lambda runtime interface emulator on 127.0.0.1:8080
	python -m pipeline.serve $(if $(VARIANT),--variant $(VARIANT)) $(if $(VERBOSE),--verbose) $(if $(DOOR),--door $(DOOR)) --port 8080

# Ship the recommended variant (params.yaml: deploy) to Lambda + API Gateway; AWS_* from the environment.
# make deploy FORCE=1 ships a variant less accurate than the live one (deploy.max_accuracy_drop);
# make deploy DRY_RUN=1 says what it would build, publish and move, and does none of it.
# `python -m pipeline.deploy --help` lists every command (docs/deploy-commands.md).
deploy: $(VENV)/.installed ## ship the recommended variant to Lambda + API Gateway (DRY_RUN=1: say what, do nothing)
	python -m pipeline.deploy deploy $(if $(FORCE),--force) $(if $(DRY_RUN),--dry-run)
rollback: $(VENV)/.installed ## move live back to the previous good version
	python -m pipeline.deploy rollback
destroy: $(VENV)/.installed ## remove what deploy created (asks first)
	python -m pipeline.deploy destroy
# What is live (version, history, a canary, the URL); the function's recent log lines. Read only.
status: $(VENV)/.installed ## the deployed function: live version, history, canary, URL
	python -m pipeline.deploy status
logs: $(VENV)/.installed ## the function's recent log lines
	python -m pipeline.deploy logs
# A memory sweep on the deployed function (params.yaml: tune), its configuration put back after; artifacts/tune/.
tune: $(VENV)/.installed ## a memory sweep on the deployed function, its configuration put back after
	python -m pipeline.deploy tune

# What the deploy tests run locally: container engines (podman, buildah, Debian's docker.io), a
# registry, debootstrap (Debian packages).
DEPLOY_TOOLS := podman buildah skopeo runc docker-registry debootstrap docker.io
deploy-deps: ## the container engines and registry the deploy tests use (apt)
	@missing=""; for t in podman buildah skopeo runc docker-registry debootstrap dockerd; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(DEPLOY_TOOLS); \
	fi

# qemu in user mode (Debian's qemu-user-static) runs the function's runtimes on Lambda's CPUs: x86_64
# without AVX-512/VNNI, and arm64 registered with binfmt_misc for containers (root; lasts until reboot).
# make all checks the variants on Lambda's CPUs (the targets stage) where it can: as root it sets up the emulators
# first; elsewhere, or where that fails, the stage marks the targets unchecked and says what to do.
emulators-where-root: $(VENV)/.installed ## make emulators where root may install them (make all's first step)
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory emulators || echo "make all: no emulators (the targets stage marks Lambda's CPUs unchecked)"; fi

emulators: $(VENV)/.installed ## qemu-user-static: Lambda's x86_64 and arm64 CPUs emulated (apt, root)
	@if ! command -v qemu-aarch64-static >/dev/null || ! command -v qemu-x86_64-static >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q qemu-user-static; \
	fi
	$(BIN)/python -m pipeline.emulators

# The Keras-vs-TFLite notebook, executed headless on this project's artifacts (outputs stay out of git).
notebook: $(VENV)/.installed ## the Keras-vs-TFLite notebook, executed headless
	python notebooks/execute.py notebooks/keras_vs_tflite.ipynb notebooks/output/keras_vs_tflite.ipynb

clean: ## remove .venv and the tool caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
