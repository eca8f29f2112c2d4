import { createApp } from 'vue';
import App from './App.vue';
import { boot } from './lib/store.js';
import './styles/base.css';

createApp(App).mount('#app');
boot();
