# Two commands: `make sweep` runs the quick-start sweep, `make test` runs the test suite.
# Both create .venv and install everything on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARCH := $(shell uname -m)

.PHONY: sweep test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
ifeq ($(ARCH),x86_64)
	# These exact versions come from local disk on the project's machines.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
endif
	$(PY) -m pip install -q -e ".[train,test]"
	touch $(STAMP)

sweep: $(STAMP)
	$(VENV)/bin/lottery run sweeps/configs/quickstart.yaml

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) results
