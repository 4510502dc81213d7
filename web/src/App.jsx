// The page: toolbar, node palette, the React Flow canvas and the gallery, around the one store.
import {
  Background, Controls, ReactFlow, ReactFlowProvider, useReactFlow,
} from '@xyflow/react';
import { useCallback, useEffect, useRef, useState } from 'react';

import { api, followEvents } from './api.js';
import BlockNode from './components/BlockNode.jsx';
import Gallery from './components/Gallery.jsx';
import GroupNode from './components/GroupNode.jsx';
import NodeSearch from './components/NodeSearch.jsx';
import NoteNode from './components/NoteNode.jsx';
import Palette, { DRAG_TYPE } from './components/Palette.jsx';
import PreviewNode from './components/PreviewNode.jsx';
import Toolbar from './components/Toolbar.jsx';
import { isImageFile, workflowIn } from './pngInfo.js';
import { familyOf } from './search.js';
import { useShortcuts } from './shortcuts.js';
import { modelRepo, useStore } from './store.js';

const NODE_TYPES = { block: BlockNode, preview: PreviewNode, note: NoteNode, box: GroupNode };
const CATALOG_RETRY_MS = 1000;
const ARTIFACT_PATH = /\/api\/artifacts\/([0-9a-f]{64})$/;

function useServer() {
  useEffect(() => {
    const store = useStore.getState();
    let cancelled = false;
    let timer = null;
    const loadCatalog = async () => {
      try {
        const catalog = await api.nodes();
        if (!cancelled) store.setCatalog(catalog);
      } catch (error) {
        if (cancelled) return;
        store.setBanner(`waiting for the server: ${error.message}`);
        timer = setTimeout(loadCatalog, CATALOG_RETRY_MS);
      }
    };
    loadCatalog();
    const stop = followEvents({
      lastSeq: () => useStore.getState().lastSeq,
      onEvent: (event) => useStore.getState().handleEvent(event),
      onStatus: (status, reconnected) => {
        const state = useStore.getState();
        state.setConnection(status);
        if (status === 'connected' && reconnected) {
          // a restarted server may list other node types (a new version, other plugins)
          loadCatalog();
          state.resync();
          state.validate();
        }
      },
    });
    return () => {
      cancelled = true;
      clearTimeout(timer);
      stop();
    };
  }, []);
}

// errors above the canvas (red), and a notice about what a loaded graph left out (amber)
function Banner() {
  const banner = useStore((state) => state.banner);
  const notice = useStore((state) => state.notice);
  const general = useStore((state) => state.errors.general);
  const catalog = useStore((state) => state.catalog);
  const { setBanner, setNotice } = useStore.getState();
  const messages = [...(banner && !(catalog && banner.startsWith('waiting')) ? [banner] : []), ...general];
  if (!messages.length && !notice) return null;
  return (
    <div className="banners">
      {messages.length > 0 && (
        <div className="banner" role="alert">
          {messages.map((message) => <div key={message}>{message}</div>)}
          {banner && <button type="button" className="button small" onClick={() => setBanner(null)}>dismiss</button>}
        </div>
      )}
      {notice && (
        <div className="banner notice" role="status" data-testid="notice">
          <div>{notice}</div>
          <button type="button" className="button small" onClick={() => setNotice(null)}>dismiss</button>
        </div>
      )}
    </div>
  );
}

function Canvas({ pointer }) {
  const nodes = useStore((state) => state.nodes);
  const edges = useStore((state) => state.edges);
  const {
    onNodesChange, onEdgesChange, onConnect, isValidConnection, addNode, rememberGraph, dragStart, drag,
  } = useStore.getState();
  const { screenToFlowPosition, fitView } = useReactFlow();
  const wrapper = useRef(null);
  const graphVersion = useStore((state) => state.graphVersion);

  // a new graph (the default, a loaded file, Reset) is shown whole
  useEffect(() => {
    if (graphVersion) requestAnimationFrame(() => fitView({ padding: 0.04 }));
  }, [graphVersion, fitView]);

  const onDragOver = useCallback((event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = 'move';
  }, []);
  const onDrop = useCallback((event) => {
    event.preventDefault();
    const at = screenToFlowPosition({ x: event.clientX, y: event.clientY });
    const type = event.dataTransfer.getData(DRAG_TYPE);
    if (type) {
      addNode(type, at);
      return;
    }
    // a saved workflow or an image that holds one (a file, or a gallery image of this page): its graph replaces this
    // one; an image that holds none becomes a Load Image node where it was dropped
    const file = event.dataTransfer.files && event.dataTransfer.files[0];
    const link = !file && event.dataTransfer.getData('text/uri-list').split('\n')[0].trim();
    const url = link && new URL(link, window.location.href);
    if (!file && !(url && url.origin === window.location.origin)) return;
    const name = file ? file.name : url.pathname.split('/').pop();
    const opened = file ? Promise.resolve(file)
      : fetch(url).then((response) => response.blob()).then((blob) => new File([blob], name, { type: blob.type }));
    const { loadDocument, addImage, setBanner } = useStore.getState();
    const stored = url && ARTIFACT_PATH.exec(url.pathname); // already on the server: no upload needed
    opened.then(async (chosen) => {
      const found = await workflowIn(chosen, modelRepo());
      if (found !== null) {
        loadDocument(found.document);
        useStore.getState().setNotice(found.notice);
      } else if (stored) addNode('LoadImage', at, null, { image: { artifact: stored[1] } });
      else if (isImageFile(chosen)) await addImage(chosen, at);
    }).catch((error) => setBanner(`could not load ${name}: ${error.message}`));
  }, [addNode, screenToFlowPosition]);

  const onBeforeDelete = useCallback(async () => {
    rememberGraph();
    return true;
  }, [rememberGraph]);

  // the search box: where it opens (client coordinates) and the wire left there, if any
  const [search, setSearch] = useState(null);
  const openSearch = (x, y, from = null) => setSearch({ x, y, from });
  const onDoubleClick = (event) => {
    if (event.target.classList.contains('react-flow__pane')) openSearch(event.clientX, event.clientY);
  };
  const onConnectEnd = useCallback((event, connection) => {
    if (connection.isValid || connection.toNode || !connection.fromHandle) return; // it reached a socket or a node
    const { spec } = useStore.getState();
    const node = connection.fromNode;
    const handle = connection.fromHandle.id;
    const nodeSpec = spec(node.data.nodeType);
    if (!nodeSpec) return;
    const { clientX, clientY } = 'changedTouches' in event ? event.changedTouches[0] : event;
    const family = familyOf(nodeSpec.category);
    const from = connection.fromHandle.type === 'source'
      ? { kind: 'source', node: node.id, handle, family, socket: nodeSpec.outputs[handle].socket }
      : { kind: 'target', node: node.id, handle, family, input: nodeSpec.inputs[handle] };
    openSearch(clientX, clientY, from);
  }, []);
  const box = wrapper.current && wrapper.current.getBoundingClientRect();

  return (
    <div
      className="canvas" ref={wrapper}
      onPointerMove={(event) => { pointer.current = { x: event.clientX, y: event.clientY }; }}
      onPointerLeave={() => { pointer.current = null; }}
      onDoubleClick={onDoubleClick}
    >
      <Banner />
      <ReactFlow
        nodes={nodes} edges={edges} nodeTypes={NODE_TYPES}
        onNodesChange={onNodesChange} onEdgesChange={onEdgesChange} onConnect={onConnect}
        isValidConnection={isValidConnection} onDrop={onDrop} onDragOver={onDragOver}
        onNodeDragStart={(event, node, dragged) => dragStart(dragged)} onSelectionDragStart={(event, dragged) => dragStart(dragged)}
        onNodeDrag={(event, node, dragged) => drag(dragged)} onSelectionDrag={(event, dragged) => drag(dragged)}
        onBeforeDelete={onBeforeDelete}
        onConnectEnd={onConnectEnd} zoomOnDoubleClick={false} onPaneClick={() => setSearch(null)}
        minZoom={0.2} maxZoom={2} proOptions={{ hideAttribution: true }} deleteKeyCode={['Delete', 'Backspace']}
      >
        <Background gap={20} size={1} />
        <Controls showInteractive={false} />
      </ReactFlow>
      {search && box && (
        <NodeSearch
          at={{ x: search.x - box.left, y: search.y - box.top }} room={box} from={search.from}
          onClose={() => setSearch(null)}
          onPick={(type) => {
            addNode(type, screenToFlowPosition({ x: search.x, y: search.y }), search.from);
            setSearch(null);
          }}
        />
      )}
    </div>
  );
}

function Editor() {
  useServer();
  const { screenToFlowPosition } = useReactFlow();
  const pointer = useRef(null); // where the pointer is over the canvas (client coordinates), for paste
  const pastePoint = useCallback(() => pointer.current && screenToFlowPosition(pointer.current), [screenToFlowPosition]);
  const centerPoint = useCallback(() => {
    const canvas = document.querySelector('.canvas').getBoundingClientRect();
    return screenToFlowPosition({ x: canvas.left + canvas.width / 2, y: canvas.top + canvas.height / 2 });
  }, [screenToFlowPosition]);
  useShortcuts(pastePoint, centerPoint);
  const addAtCenter = useCallback((type) => useStore.getState().addNode(type, centerPoint()), [centerPoint]);
  return (
    <div className="app">
      <Toolbar />
      <main className="workspace">
        <Palette onAdd={addAtCenter} />
        <Canvas pointer={pointer} />
        <Gallery />
      </main>
    </div>
  );
}

export default function App() {
  return (
    <ReactFlowProvider>
      <Editor />
    </ReactFlowProvider>
  );
}
