# JS twin of the demo project (demo/js/) under the real LangGraph.js dev server.
# Included by the top Makefile, which defines PY and VENV_STAMP.

JS_DIR := demo/js
JS_STAMP := $(JS_DIR)/node_modules/.stamp
# The API server's engines field says node >= 20.16; an older or missing node is replaced by
# the npm-shipped binary in demo/js/.node (JsDevServer puts its bin/ first on PATH).
JS_NODE_VERSION := 20.20.2
JS_NODE_DIR := $(JS_DIR)/.node
JS_NODE_OK = node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a==20&&b>=16)?0:1)'

.PHONY: demo-js devserver-js

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	scripts/install-tools.sh npm
	if ! $(JS_NODE_OK) 2>/dev/null && ! test -x $(JS_NODE_DIR)/bin/node; then \
	  arch=$$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/'); \
	  npm install --prefix $(JS_NODE_DIR) --no-save --no-audit --no-fund \
	    node-linux-$$arch@$(JS_NODE_VERSION) && \
	  mkdir -p $(JS_NODE_DIR)/bin && \
	  ln -sf ../node_modules/node-linux-$$arch/bin/node $(JS_NODE_DIR)/bin/node; \
	fi
	cd $(JS_DIR) && PATH="$$PWD/.node/bin:$$PATH" npm ci --no-audit --no-fund
	touch $@

demo-js: $(JS_STAMP) ## install the LangGraph.js twin of the demo project (demo/js)
# Foreground JS dev server on 127.0.0.1 (a free port unless DEVSERVER_ARGS="--port P"); Ctrl-C stops it.
devserver-js: $(VENV_STAMP) $(JS_STAMP) ## foreground LangGraph.js dev server; prints its URL (DEVSERVER_ARGS="--port P")
	$(PY) demo/devserver_js.py $(DEVSERVER_ARGS)
