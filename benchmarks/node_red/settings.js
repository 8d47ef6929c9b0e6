// Node-RED settings for bench_side_by_side.py: no editor, no HTTP server, warnings only.
// The flow file and the user directory come from the command line (-u <tmp> flows.json).
module.exports = {
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    credentialSecret: false,
    flowFilePretty: false,
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false }, modules: { allowInstall: false } },
    functionExternalModules: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { projects: { enabled: false } },
};
