# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
# Debian packages the tests use: DCMTK (JPEG lossless encoder, storescp/storescu), dicom3tools (dciodvfy),
# Orthanc (the PACS the node talks to in tests), PostgreSQL (the shared results index in tests), Redis (the
# Celery broker of the scale-out tests), g++ (torch.compile's code generator, used by make model).
# orthanc-dicomweb and chromium: the OHIF viewer tests (tests/test_viewer_ohif.py) and `make viewer`.
DEB_PACKAGES := dcmtk dicom3tools orthanc orthanc-dicomweb postgresql redis-server g++ chromium
# what each package brings: a command, or a file by its absolute path (Orthanc's DICOMweb plugin)
DEB_COMMANDS := dcmcjpeg dciodvfy Orthanc pg_ctlcluster redis-server g++ chromium \
	/usr/share/orthanc/plugins/libOrthancDicomWeb.so
# OHIF's built viewer (the npm package @ohif/app's dist/), fetched once into a cache outside git
OHIF_VERSION := 3.13.2
OHIF_CACHE := $(or $(CXRXAI_CACHE),$(HOME)/.cache/cxrxai)/ohif-$(OHIF_VERSION)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo lint bench bench-gpu debs demo-debs compiler clean samples model ohif viewer

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch on this machine's disk; never a CUDA build or torchvision in the default install.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[model,node,index,scale,test]'
	touch $(STAMP)

# The highdicom 3D Slicer 5.12 ships (its SuperBuild pins 0.27.0): tests/test_slicer_mrml.py reviews a study
# with it, ahead of the venv's own
SLICER_SITE := $(VENV)/slicer-5.12
$(SLICER_SITE)/.installed: $(STAMP)
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(SLICER_SITE) highdicom==0.27.0
	touch $@

# $(call apt_install,COMMANDS,PACKAGES): apt-get install PACKAGES when one of COMMANDS (commands, or files
# given by absolute path) is missing.
define apt_install
missing=""; for c in $(1); do command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || [ -e $$c ] || missing="$$missing $$c"; done; \
if [ -n "$$missing" ]; then \
	echo "installing Debian packages for:$$missing"; \
	$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(2) >/dev/null; \
fi
endef

debs:
	@$(call apt_install,$(DEB_COMMANDS),$(DEB_PACKAGES))

ohif: $(OHIF_CACHE)/package/dist/index.html

$(OHIF_CACHE)/package/dist/index.html:
	@$(call apt_install,npm,npm)
	mkdir -p $(OHIF_CACHE)
	cd $(OHIF_CACHE) && npm pack --silent @ohif/app@$(OHIF_VERSION) >/dev/null && tar xzf ohif-app-$(OHIF_VERSION).tgz

lint: $(STAMP)
	$(VENV)/bin/ruff check cxrxai dicom_node slicer_cxrxai tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: $(STAMP) $(SLICER_SITE)/.installed debs ohif lint
	$(PY) -m pytest -x -q

# the demo's PACS is Orthanc with DICOMweb, so `make viewer` can show its results in OHIF
demo-debs:
	@$(call apt_install,Orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so,orthanc orthanc-dicomweb)

demo: $(STAMP) demo-debs
	$(PY) -m dicom_node.demo

# OHIF over the archive `make demo` filled; prints each study's address, stops on Ctrl-C
viewer: $(STAMP) demo-debs ohif
	$(PY) -m dicom_node.viewer

# Benchmarks run in their own venv: pytorch-grad-cam needs torchvision, which does not load beside torch 2.13.
$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[model]' grad-cam
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) $(STAMP) debs
	$(BENCH_VENV)/bin/python bench/bench_explain.py
	# the node benchmark needs no torchvision: it runs in the project's own venv
	$(PY) bench/bench_node.py
	$(PY) bench/bench_index.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_sizes.py
	$(PY) bench/bench_resolution.py
	$(PY) bench/bench_batch.py

# The GPU run (explanations, resolution, batch on CUDA) in a venv of its own; says so and stops where no GPU is
bench-gpu:
	bench/gpu.sh

# The sample radiographs in resources/samples are generated, deterministically, by cxrxai.samples.
samples: $(STAMP)
	$(PY) -c "from cxrxai.phantoms.samples import write_samples; write_samples('resources/samples', count=2)"

# The shipped default bundle (resources/bundles/default): phantoms, training, held-out evaluation, model card.
# MODEL_ARGS overrides the recipe, e.g. MODEL_ARGS="--device cuda --input-size 256 --epochs 40".
model: $(STAMP) compiler
	$(PY) -m cxrxai.train.default_model build/model $(MODEL_ARGS)

# The recipe torch.compiles the network, which generates C++ on the CPU: g++ only, not every test package.
compiler:
	@$(call apt_install,g++,g++)

clean:
	rm -rf $(VENV) $(BENCH_VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
