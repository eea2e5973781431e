"""The Content-Security-Policy every page is served with."""

# Scripts, styles and everything else from this origin only: no inline script or style, no
# eval (htmx is told so in base.html), no framing, forms posting only here. An injected
# <script> or on* attribute does not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
