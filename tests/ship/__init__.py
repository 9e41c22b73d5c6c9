"""Tests for what ships beside the package: tools, Dockerfile, Helm chart, dashboard, alert rules."""
