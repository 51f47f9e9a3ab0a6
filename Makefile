# batigate: two commands on a fresh machine — `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test bench soak fuzz clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[test,demo]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/batigate demo

# The suite talks to real peers (mosquitto, libmodbus, tmux, chromium, qemu-user...): as root the
# Debian packages are installed first (idempotent, quick once done); npm tools and the venvs of
# Home Assistant and pysparkplug are made by their tests on first use.
test: $(STAMP)
	@if [ "$$(id -u)" = 0 ]; then bash images/host-setup.sh; \
	else echo "not root: the suite needs the Debian packages listed in images/host-setup.sh"; fi
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

# A million inputs across the command handler, the YAML loader, the M-Bus and Modbus decoders
# (count and rate printed per target; findings saved under build/fuzz-findings). Not in `make test`.
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz.run --budget $${FUZZ_BUDGET:-1000000}

soak: $(STAMP)
	BATIGATE_OUTAGE_S=600 $(BIN)/pytest -q -m slow tests/faults --timeout 1200

.PHONY: interop-ha

# The Home Assistant core interop test alone (also part of `make test`); the first run installs
# Home Assistant 2024.3.3 in build/interop/ha (3-6 min), later runs take ~15 s.
interop-ha: $(STAMP)
	$(BIN)/pytest -q tests/wire/test_homeassistant_core.py

.PHONY: image image-test

# Flashable Raspberry Pi 3/4 image (arm64, ~13 min on 2 cores: mkinitramfs under qemu-user).
image:
	images/image.sh build/images

# The built image (after `make image`): static checks of the file, its venv under qemu-user, then
# a full boot under qemu-system-aarch64 (through U-Boot) that must reach the broker and install a
# RAUC bundle into slot B (~5-10 min). Not in `make test`.
# The quick tests of images/ (tests/images/test_*.py) are part of `make test`.
image-test: $(STAMP)
	images/host-setup.sh
	images/check-image.sh build/images/batigate-pi-arm64.img
	$(BIN)/pytest -q -s -p no:cacheprovider tests/images/image_venv.py tests/images/package_pin.py \
	  tests/images/rauc_bundle.py tests/images/boot_qemu.py
