import '@xyflow/react/dist/style.css';
import './styles.css';

import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

import App from './App.jsx';
import { useStore } from './store.js';

// for tests and the browser console: the graph as workflow JSON and as a saved document
window.diffblocks = {
  workflow: () => useStore.getState().workflow(),
  document: () => useStore.getState().document(),
  state: () => useStore.getState(),
};

createRoot(document.getElementById('root')).render(<StrictMode><App /></StrictMode>);
