# batigate: two commands on a fresh machine — `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test bench soak clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[test,demo]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/batigate demo

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

soak: $(STAMP)
	BATIGATE_OUTAGE_S=600 $(BIN)/pytest -q -m slow tests/faults --timeout 1200

.PHONY: image image-test

# Flashable Raspberry Pi 3/4 image (arm64, ~13 min on 2 cores: mkinitramfs under qemu-user).
image:
	images/image.sh build/images

# The built image (after `make image`): static checks of the file, its venv under qemu-user, then
# a full boot under qemu-system-aarch64 that must reach the broker (~5-10 min). Not in `make test`.
# The quick tests of images/ (tests/images/test_*.py) are part of `make test`.
image-test: $(STAMP)
	images/host-setup.sh
	images/check-image.sh build/images/batigate-pi-arm64.img
	$(BIN)/pytest -q -s -p no:cacheprovider tests/images/image_venv.py tests/images/package_pin.py \
	  tests/images/rauc_bundle.py tests/images/boot_qemu.py
