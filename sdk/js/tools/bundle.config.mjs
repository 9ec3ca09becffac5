// Merged into jco's Rolldown bundle of a plugin: the WIT interfaces are the
// component's imports, provided by hookhost, not modules to resolve.
export default {
  external: [/^hookhost:/, /^wasi:/],
};
