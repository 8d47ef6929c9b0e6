// A real node-opcua server for tests/test_security_opcua.py: Basic256Sha256/SignAndEncrypt only, and
// its certificate manager rejects unknown client certificates (node-opcua's default): a rejected one
// lands in <root>/pki/rejected until someone moves it to <root>/pki/trusted/certs.
// Usage: node opcua_server.js PORT ROOT   (prints "READY <endpoint>" once listening)
const { OPCUAServer, OPCUACertificateManager, SecurityPolicy, MessageSecurityMode } = require("node-opcua");

async function main() {
    const port = parseInt(process.argv[2], 10);
    const root = process.argv[3];
    const serverCertificateManager = new OPCUACertificateManager({
        rootFolder: root + "/pki",
        automaticallyAcceptUnknownCertificate: false,
    });
    await serverCertificateManager.initialize();
    const server = new OPCUAServer({
        port,
        host: "127.0.0.1",
        hostname: "127.0.0.1",
        serverCertificateManager,
        securityPolicies: [SecurityPolicy.Basic256Sha256],
        securityModes: [MessageSecurityMode.SignAndEncrypt],
        allowAnonymous: true,
        serverInfo: { applicationUri: "urn:edge-agent:test:node-opcua" },
    });
    await server.initialize();
    await server.start();
    console.log("READY " + server.getEndpointUrl());
    process.on("SIGTERM", async () => {
        await server.shutdown(0);
        process.exit(0);
    });
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
