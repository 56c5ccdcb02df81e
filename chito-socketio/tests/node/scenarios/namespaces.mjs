// Namespaces: a namespace behind an auth middleware (accepted, and refused
// with connect_error carrying `message` and `data`), an unknown namespace,
// a dynamic one, and several namespaces multiplexed on one connection.
import { io, Manager, check, same, next, connected, step, scenario } from './lib.mjs';

const URL = process.env.CHITO_URL;
const options = { forceNew: true, reconnection: false, transports: ['websocket'] };

scenario('namespaces', async () => {
  await step('/admin with the right token connects and sees its auth', async () => {
    const admin = io(`${URL}/admin`, { ...options, auth: { token: 'secret', user: 'ada' } });
    const welcome = next(admin, 'welcome');
    await connected(admin);
    same(await welcome, [{ ns: '/admin', auth: { token: 'secret', user: 'ada' } }], 'welcome');
    admin.disconnect();
  });

  await step('/admin with a wrong token gets connect_error with message and data', async () => {
    const intruder = io(`${URL}/admin`, { ...options, auth: { token: 'guess' } });
    const [error] = await next(intruder, 'connect_error');
    same(error.message, 'not authorized', 'message');
    same(error.data, { code: 4401, hint: 'token' }, 'data');
    check(!intruder.connected, 'refused socket reports connected');
    intruder.close();
  });

  await step('/admin without auth is refused too', async () => {
    const anonymous = io(`${URL}/admin`, options);
    const [error] = await next(anonymous, 'connect_error');
    same(error.message, 'not authorized', 'message');
    anonymous.close();
  });

  await step('an unknown namespace gets "Invalid namespace"', async () => {
    const lost = io(`${URL}/nowhere`, options);
    const [error] = await next(lost, 'connect_error');
    same(error.message, 'Invalid namespace', 'message');
    lost.close();
  });

  await step('a dynamic namespace /tenant-<n> is created on connect', async () => {
    const tenant = io(`${URL}/tenant-42`, options);
    const hello = next(tenant, 'tenant');
    await connected(tenant);
    same(await hello, ['/tenant-42'], 'tenant greeting');
    same(await tenant.emitWithAck('where'), '/tenant-42', 'namespace of the handler');
    tenant.disconnect();
  });

  await step('/, /admin and /tenant-7 share one connection, each its own socket', async () => {
    const manager = new Manager(URL, { reconnection: false, transports: ['websocket'] });
    const main = manager.socket('/');
    const admin = manager.socket('/admin', { auth: { token: 'secret' } });
    const tenant = manager.socket('/tenant-7');
    await Promise.all([connected(main), connected(admin), connected(tenant)]);
    check(main.id !== admin.id && admin.id !== tenant.id, 'socket ids repeat');
    same(await main.emitWithAck('where'), '/', 'main');
    same(await admin.emitWithAck('where'), '/admin', 'admin');
    same(await tenant.emitWithAck('where'), '/tenant-7', 'tenant');
    // Leaving one namespace keeps the others.
    admin.disconnect();
    same(await main.emitWithAck('where'), '/', 'main after admin left');
    same(await tenant.emitWithAck('where'), '/tenant-7', 'tenant after admin left');
    main.disconnect();
    tenant.disconnect();
  });
});
