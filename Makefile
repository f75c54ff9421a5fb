# Two commands for a fresh machine: `make demo` and `make test`. Both set everything up themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The pinned PyTorch build that installs from the local wheel cache on the development machines.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
DEMO_SPLITS ?= splits/fmnist_lt
DEMO_RUNS ?= runs
# The demo keeps the short 12-epoch budget of its first release (a few minutes on two CPU cores), whatever the
# config's own budget: the joint model is not converged after 12 epochs.
DEMO_EPOCHS ?= 12

.PHONY: setup data demo test lint clean

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.stamp

# The embedded benchmark's data: Debian's package where apt is usable, else torchvision's download
# (done lazily by openlt itself on first use).
data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "apt could not install dataset-fashion-mnist; openlt will try torchvision's download"; \
	fi

demo: setup data
	$(PY) -m openlt split --dataset fashion-mnist --out $(DEMO_SPLITS) --force
	@echo "make demo: a short $(DEMO_EPOCHS)-epoch budget (train.epochs=$(DEMO_EPOCHS)) to show the tool in minutes; the model is not trained to convergence, so do not compare methods on it."
	$(PY) -m openlt train configs/fmnist_lt/plain.yaml data.split_dir=$(DEMO_SPLITS) out_dir=$(DEMO_RUNS) train.epochs=$(DEMO_EPOCHS) --name demo-plain
	@echo "The run directory and report are listed above (runs/demo-plain-*/metrics.json, report.md, report.html)."
	@echo "Note: the demo keeps a short $(DEMO_EPOCHS)-epoch budget, so its model is under-trained; compare methods with the configs' own budgets (docs/results.md)."

# Two pytest workers, a test file each at a time (module-scoped fixtures built once), one torch thread each: the
# suite is mostly single-threaded small runs and subprocesses, so two files side by side use both cores.
TEST_WORKERS ?= 2

test: setup data
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

clean:
	rm -rf $(VENV) runs splits .pytest_cache
