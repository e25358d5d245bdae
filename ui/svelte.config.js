// Plain Svelte 5 SPA: no preprocessors (plain JS and CSS keep the build fast
// and dependency-free).
export default {};
