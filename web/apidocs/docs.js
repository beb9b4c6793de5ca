// Renders identityd's own OpenAPI document (/openapi.json, beside this
// page at /docs/) with Swagger UI. A file, not an inline script: the
// page's CSP allows scripts from 'self' only.
/* global SwaggerUIBundle */
window.ui = SwaggerUIBundle({
  url: new URL('../openapi.json', window.location.href).href,
  dom_id: '#docs',
  // Nothing leaves the page's origin: no badge from validator.swagger.io.
  validatorUrl: null,
  deepLinking: true,
  // Operations open collapsed; "Try it out" calls this identityd.
  docExpansion: 'list',
  displayRequestDuration: true,
});
